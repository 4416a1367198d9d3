"""What the residual check after denoising (the widget's verdict) says about
each output of one fixed-step run, beside the PSNR it cannot see.

    python -m benchmarks.verdict --data fmd:6-6 --steps 5793
    python -m benchmarks.verdict --data fmd,w2s:3 --steps 1000,1500
    python -m benchmarks.verdict --data phantom3d --spatial-dims 3 --steps 901

``--steps`` takes one run length or several (a run of each per image).
Writes benchmarks/results/<date>-<host>-<tag>.json: per image, run and output
mode, the PSNR, ``residual_std_ratio``, ``out_of_range`` and the warnings of `noise_report`,
the training summary's message (the visible-against-blind check) and what
that check reads on the training sample: ``check_res_visible``,
``check_res_blind`` and their ``check_ratio`` (flagged from
`napari_b2u.engine.noise.VISIBLE_MARGIN` up).
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch

from benchmarks.data import load_cases
from benchmarks.machine import write_json
from benchmarks.quality import RESULTS, psnr
from napari_b2u.api import noise_report, train
from napari_b2u.config import MODES
from napari_b2u.engine.training import sample_residuals


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fmd:6-6")
    parser.add_argument("--noise", default="gauss25")
    parser.add_argument("--steps", type=_step_counts, default=[5793], help="one count, or several: 1000,1500")
    parser.add_argument("--spatial-dims", type=int, default=2, choices=(2, 3), help="3: train volumes (Z Y X cases)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default=None)
    parser.add_argument("--out", default=RESULTS, type=Path, help="results folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = datetime.datetime.now()
    rows = []
    runs = [(case, steps) for case in load_cases(args.data, [args.noise], seed=args.seed) for steps in args.steps]
    for case, steps in runs:
        volumes = {"axes": "ZYX", "spatial_dims": 3} if args.spatial_dims == 3 else {}
        model = train(case.noisy, steps=steps, time_budget=None, seed=args.seed, device="cpu", **volumes)
        res_visible, res_blind = sample_residuals(model)
        check = {"check_res_visible": round(res_visible, 3), "check_res_blind": round(res_blind, 3),
                 "check_ratio": round(res_visible / res_blind, 4) if res_blind > 0 else None}
        for mode in MODES:
            out = model.denoise(case.noisy, axes=volumes.get("axes"), mode=mode)
            report = noise_report(case.noisy, out, handled=model.subsample)
            row = {"case": case.name, "steps": model.summary.steps, "mode": mode,
                   "psnr": round(psnr(out, case.clean), 3), "psnr_noisy": round(psnr(case.noisy, case.clean), 3),
                   "residual_std_ratio": round(report.residual_std_ratio, 3),
                   "residual_structure": round(report.residual_structure, 4),
                   "out_of_range": report.out_of_range, "warnings": report.warnings,
                   "training_message": model.summary.message, **check}
            print(json.dumps(row), flush=True)
            rows.append(row)
    write_json(args.out, args.tag or f"verdict-{'-'.join(map(str, args.steps))}steps", "benchmarks.verdict", argv, started,
               rows, threads=args.threads)


def _step_counts(text: str) -> list[int]:
    counts = [int(s) for s in text.split(",") if s.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give step counts >= 1, e.g. 1000 or 1000,1500")
    return counts


if __name__ == "__main__":
    main()
