"""How the outputs change along one long run: one seeded, fixed-step run (one
model for all ``--data`` images, as `benchmarks.pooled --mixed`) keeps a copy
of its weights every ``--every`` steps; each copy is then scored on every
image, visible and blind output, with label-free readings beside the PSNR.

    python -m benchmarks.trajectory --data set12:2 --steps 16000 --every 1000

The schedules (lambda, lr) follow the whole run's progress, so a copy at step
k is the run at k/steps of its schedule, not a run of k steps. Label-free
readings, in the image's units squared: ``res_visible`` = mean((noisy -
visible)²), ``res_blind`` = the same for the blind output, ``gap`` =
mean((visible - blind)²). With independent noise of variance s², a good
output leaves a residual near s²; a visible output that takes noise back has
a residual falling below it. Writes
benchmarks/results/<date>-<host>-<tag>.json. The copies are taken by a
subclass of Adam swapped in for the run (the engine keeps no history).
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import numpy as np
import torch

import napari_b2u.engine.training as training
from benchmarks.data import load_cases
from benchmarks.machine import write_json
from benchmarks.pooled import _mixed_image
from benchmarks.quality import RESULTS, parse_variant, psnr
from napari_b2u.api import STOP, Step, train
from napari_b2u.core.schedule import lambda_schedule, lr_schedule


class _CopyingAdam(torch.optim.Adam):
    """Adam that keeps a copy of the parameters every ``every`` steps (from step
    ``first`` on) and the norm of the gradients it steps with."""

    every, first = 1000, 0
    copies: dict[int, list[torch.Tensor]] = {}
    grad_norms: list[float] = []
    steps = 0

    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        _CopyingAdam.grad_norms.append(float(training.grad_norm(grads)) if grads else 0.0)
        out = super().step(closure)
        _CopyingAdam.steps += 1
        if _CopyingAdam.steps % _CopyingAdam.every == 0 and _CopyingAdam.steps >= _CopyingAdam.first:
            params = [p.detach().clone() for g in self.param_groups for p in g["params"]]
            _CopyingAdam.copies[_CopyingAdam.steps] = params
        return out


def _score(model, cases, axes: str | None = None) -> dict[str, float]:
    """Mean PSNR of the visible and blind outputs over ``cases``, and the label-free readings."""
    keys = ("psnr_visible", "psnr_blind", "res_visible", "res_blind", "gap")
    values = {k: [] for k in keys}
    for case in cases:
        visible = model.denoise(case.noisy, axes, mode="visible").astype(np.float64)
        blind = model.denoise(case.noisy, axes, mode="blind").astype(np.float64)
        noisy = case.noisy.astype(np.float64)
        values["psnr_visible"].append(psnr(visible, case.clean))
        values["psnr_blind"].append(psnr(blind, case.clean))
        values["res_visible"].append(np.mean((noisy - visible) ** 2))
        values["res_blind"].append(np.mean((noisy - blind) ** 2))
        values["gap"].append(np.mean((visible - blind) ** 2))
    return {k: round(float(np.mean(v)), 3) for k, v in values.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="set12:2")
    parser.add_argument("--noise", default="gauss25")
    parser.add_argument("--steps", type=int, default=16000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--first", type=int, default=0, help="keep no copy before this step")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="end the run at this step, its schedules still those of --steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spatial-dims", type=int, default=2, choices=(2, 3),
                        help="3: train the first case as one Z Y X volume (phantom3d)")
    parser.add_argument("--set", default="", help="TrainConfig overrides, key=value;key=value (Python literals)")
    parser.add_argument("--tag", default=None)
    parser.add_argument("--out", default=RESULTS, type=Path, help="results folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = datetime.datetime.now()
    cases = load_cases(args.data, [args.noise], seed=args.seed)
    _CopyingAdam.every, _CopyingAdam.first, _CopyingAdam.copies, _CopyingAdam.steps = args.every, args.first, {}, 0
    _CopyingAdam.grad_norms = []
    overrides = parse_variant(":" + args.set)[1]
    losses: list[tuple[int, float]] = []  # (step, mean training loss since the last report)
    adam = training.torch.optim.Adam
    training.torch.optim.Adam = _CopyingAdam  # the engine builds its optimizer from this name
    try:
        if args.spatial_dims == 3:
            cases = cases[:1]
            image, axes = cases[0].noisy, "ZYX"
            overrides = {"spatial_dims": 3, **overrides}
        else:
            image, axes = _mixed_image(cases), None
        model = train(image, axes=axes, steps=args.steps, time_budget=None, seed=args.seed,
                      device="cpu", callback=lambda e: _report(e, losses, args.stop_at), **overrides)
    finally:
        training.torch.optim.Adam = adam
    config = model.config
    _CopyingAdam.copies[model.summary.steps] = [p.detach().clone() for p in model.net.parameters()]
    rows = []
    params = list(model.net.parameters())
    with torch.no_grad():
        for step, weights in sorted(_CopyingAdam.copies.items()):
            for p, w in zip(params, weights):
                p.copy_(w)
            progress = step / args.steps
            row = {"step": step, "lam": round(lambda_schedule(progress, config.t1, config.lam0, config.lam1), 2),
                   "lr": lr_schedule(progress, config.lr, config.lr_milestones, config.lr_gamma),
                   **_score(model, cases, axes)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    write_json(args.out, args.tag or f"trajectory-{args.steps}steps", "benchmarks.trajectory", argv,
               started, rows, threads=args.threads, images=[c.name for c in cases],
               precision=model.summary.precision, overrides=overrides, losses=losses,
               stop_reason=model.summary.stop_reason.value, message=model.summary.message,
               grad_norms=[round(g, 4) for g in _CopyingAdam.grad_norms])


def _report(event, losses: list[tuple[int, float]], stop_at: int | None):
    """Record a ``Step``'s loss; `STOP` once it reaches ``stop_at``."""
    if isinstance(event, Step):
        losses.append((event.step, round(event.loss, 5)))
        if len(losses) % 100 == 0:
            print(f"step {event.step}, loss {event.loss:.4g}, {event.elapsed:.0f} s", flush=True)
        if stop_at is not None and event.step >= stop_at:
            return STOP
    return None


if __name__ == "__main__":
    main()
