"""Does an exponential moving average (EMA) of the weights denoise better than
the final weights? A paired check: one seeded, fixed-step run per image keeps
EMAs of its own weights (decays 0.98, 0.99, 0.995), so both come from the same
trajectory and step-count noise cancels.

    python -m benchmarks.ema_check --data set12:3 --steps 900

Writes benchmarks/results/<date>-<host>-ema-<steps>steps.json. The EMA is
kept by a subclass of Adam swapped in for the run (the engine has no EMA).
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import sys

import numpy as np
import torch

import napari_b2u.engine.training as training
from benchmarks.data import load_cases
from benchmarks.machine import run_meta
from benchmarks.quality import RESULTS, psnr
from napari_b2u.api import train

DECAYS = (0.98, 0.99, 0.995)


class _EmaAdam(torch.optim.Adam):
    """Adam that also keeps EMAs of the parameters after every step."""

    emas: dict[float, list[torch.Tensor]] = {}

    def step(self, closure=None):
        out = super().step(closure)
        params = [p.detach() for g in self.param_groups for p in g["params"]]
        if not _EmaAdam.emas:
            _EmaAdam.emas = {d: [p.clone() for p in params] for d in DECAYS}
        else:
            for d, ema in _EmaAdam.emas.items():
                torch._foreach_lerp_(ema, params, 1 - d)
        return out


def _visible_psnr(model, case) -> float:
    return round(float(psnr(model.denoise(case.noisy, mode="visible"), case.clean)), 3)


def _psnr_with(model, weights, case) -> float:
    """`_visible_psnr` with ``weights`` in the network, its own put back after."""
    params = list(model.net.parameters())
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, w in zip(params, weights):
            p.copy_(w)
        value = _visible_psnr(model, case)
        for p, w in zip(params, saved):
            p.copy_(w)
    return value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="set12:3")
    parser.add_argument("--noise", default="gauss25")
    parser.add_argument("--steps", type=int, default=900)
    args = parser.parse_args(argv)
    started = datetime.datetime.now()
    training.torch.optim.Adam = _EmaAdam  # the engine builds its optimizer from this name
    rows = []
    for case in load_cases(args.data, [args.noise]):
        _EmaAdam.emas = {}
        model = train(case.noisy, steps=args.steps, time_budget=None, seed=0, device="cpu")
        row = {"case": case.name, "steps": args.steps, "final": _visible_psnr(model, case)}
        row.update({f"ema{d}": _psnr_with(model, w, case) for d, w in _EmaAdam.emas.items()})
        print(json.dumps(row), flush=True)
        rows.append(row)
    means = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0] if k not in ("case", "steps")}
    print("mean", means)
    meta = run_meta("python -m benchmarks.ema_check " + " ".join(sys.argv[1:] if argv is None else argv), started)
    RESULTS.mkdir(exist_ok=True)
    name = f"{started:%Y-%m-%d}-{socket.gethostname()}-ema-{args.steps}steps.json"
    (RESULTS / name).write_text(json.dumps({"meta": meta, "rows": rows, "mean": means}, indent=1))


if __name__ == "__main__":
    main()
