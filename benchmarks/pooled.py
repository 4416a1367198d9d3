"""One model for a whole data set against one model per image, for the same total time.

    python -m benchmarks.pooled --data set12 --noise gauss25 --budget 60 --compare

The plugin trains one model on a whole stack, and `napari_b2u.api.train_files`
one model on many files. Here the images of each ``--data`` item that share a
size are stacked (``fmd:4,fmd:5-7`` makes two groups), and one model is
trained on the stack for ``budget`` seconds *per image* (``len(images) *
budget`` in all), then denoises every image. With
``--compare`` each image is also trained on alone for ``budget`` seconds in
the same run (variant ``single``), so the two are compared on one machine.
With ``--mixed`` all images of a ``--data`` item, whatever their sizes, also
train one model together (variant ``mixed``), as `napari_b2u.api.train_files`
trains on files of different sizes: planes sampled by their pixel counts.
``--mixed-only`` trains only that shared model (no per-size models), so a long
budget costs half the time.
Rows are scored per image, as `benchmarks.quality` scores them, and written to
``benchmarks/results/<date>-<host>-<tag>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from benchmarks.data import Case, load_cases
from benchmarks.quality import RESULTS, parse_variant, result_row, split_variants, write_results
from napari_b2u.api import train
from napari_b2u.engine.data import Planes, PlaneSet

OUTPUTS = {"visible": {"mode": "visible"}, "visible-ensemble": {"mode": "visible", "ensemble": True}}


def _denoise_all(model, noisy: np.ndarray) -> dict[str, np.ndarray]:
    return {name: model.denoise(noisy, **kwargs) for name, kwargs in OUTPUTS.items()}


def _train_and_score(cases: list[Case], image: np.ndarray | PlaneSet, variant: str, overrides: dict,
                     budget: float | None, steps: int | None, recorded: dict) -> list[dict]:
    """Train one model on ``image`` (one case's image, the stack of ``cases``,
    or a `PlaneSet` of them) for ``len(cases)`` times the per-image budget or
    steps, score it on each case (each denoised by itself, which gives what
    denoising their stack gives); the rows record ``recorded`` as their overrides."""
    n = len(cases)
    length = {"time_budget": n * budget} if steps is None else {"steps": n * steps, "time_budget": None}
    t0 = time.perf_counter()
    model = train(image, **{"device": "cpu", **length, **overrides})
    per_case = [_denoise_all(model, case.noisy) for case in cases]  # plane by plane: as from the stack
    share = (time.perf_counter() - t0) / n
    return [result_row(case, "b2u", variant, recorded, output, per_case[i][output],
                       budget, share, model.summary.steps, model.summary.precision)
            for output in OUTPUTS for i, case in enumerate(cases)]  # fmt: skip


def pooled(group: list[Case], budget: float | None, steps: int | None, variant: str,
           overrides: dict) -> list[dict]:
    """Train one model on ``group`` (images of one size), score it on each image."""
    stack = np.stack([c.noisy for c in group])
    return _train_and_score(group, stack, f"pooled-{variant}", overrides, budget, steps,
                            recorded={**overrides, "images": len(group)})


def mixed(cases: list[Case], budget: float | None, steps: int | None, variant: str,
          overrides: dict) -> list[dict]:
    """Train one model on all ``cases`` whatever their sizes, score it on each."""
    return _train_and_score(cases, _mixed_image(cases), f"mixed-{variant}", overrides, budget, steps,
                            recorded={**overrides, "images": len(cases)})


def _mixed_image(cases: list[Case]) -> np.ndarray | PlaneSet:
    """The images of ``cases`` as one training input: a stack when they share
    one size, else a `PlaneSet`, as ``train_files`` does."""
    if len({c.noisy.shape for c in cases}) == 1:
        return np.stack([c.noisy for c in cases])
    return PlaneSet([Planes(c.noisy) for c in cases])


def single(case: Case, budget: float | None, steps: int | None, variant: str,
           overrides: dict) -> list[dict]:
    """Train one model on ``case`` alone, score it."""
    return _train_and_score([case], case.noisy, f"single-{variant}", overrides, budget, steps,
                            recorded=overrides)


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    groups = defaultdict(list)  # per --data item (fmd:4,fmd:5-7 are two), noise and size
    items = defaultdict(list)  # per --data item and noise, all sizes
    for item in args.data.split(","):
        for case in load_cases(item, args.noise.split(","), seed=args.seed):
            groups[(item, case.noise, case.noisy.shape)].append(case)
            items[(item, case.noise)].append(case)
    budget = None if args.steps else args.budget
    rows = []
    for name, overrides in (parse_variant(v) for v in split_variants(args.variants)):
        overrides = {"seed": args.seed, **overrides}
        for group in groups.values():
            if not args.mixed_only:
                rows += pooled(group, budget, args.steps, name, overrides)
            if args.compare:
                for case in group:
                    rows += single(case, budget, args.steps, name, overrides)
        if args.mixed or args.mixed_only:
            for cases in items.values():
                rows += mixed(cases, budget, args.steps, name, overrides)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="set12")
    parser.add_argument("--noise", default="gauss25")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per image")
    parser.add_argument("--steps", type=int, default=None, help="steps per image instead of a time budget")
    parser.add_argument("--variants", default="default", help="name:key=value;key=value, as in benchmarks.quality")
    parser.add_argument("--compare", action="store_true", help="also train on each image alone")
    parser.add_argument("--mixed", action="store_true",
                        help="also train one model on all sizes of each --data item together")
    parser.add_argument("--mixed-only", action="store_true",
                        help="train only the --mixed model, not one model per image size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="pooled")
    parser.add_argument("--out", default=RESULTS, type=Path, help="results folder")
    args = parser.parse_args(argv)
    started = datetime.datetime.now()
    write_results(run(args), args, "benchmarks.pooled", argv, started)


if __name__ == "__main__":
    main()
