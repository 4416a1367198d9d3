"""Quality per unit of compute: PSNR/SSIM of each method at fixed wall-clock budgets.

    python -m benchmarks.quality --data camera --noise gauss25 --budget 60,300 \
        --methods b2u,bm3d,n2v,supervised --variants default,cell4:cell=4

Writes benchmarks/results/<date>-<host>-quality.{json,md,png} and prints the
table. Every row names its data, noise, budget, threads and device. Each
image is denoised on its own (single-image self-supervised training).
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from benchmarks.data import load_cases
from benchmarks.machine import run_meta
from benchmarks.methods import METHODS, MethodUnavailable
from napari_b2u.demo import psnr

RESULTS = Path(__file__).parent / "results"


def split_variants(text: str) -> list[str]:
    """Split ``--variants`` on the commas outside brackets, so tuples can be values."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:key=value;key=value`` -> (name, overrides); values are Python literals."""
    import ast

    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return name, overrides


def ssim(image: np.ndarray, clean: np.ndarray) -> float:
    """Mean SSIM over the planes of a stack (SSIM of the image for 2-D)."""
    planes = zip(image.reshape(-1, *image.shape[-2:]), clean.reshape(-1, *clean.shape[-2:]))
    return float(np.mean([structural_similarity(a, b, data_range=255.0) for a, b in planes]))


def psnr_fit(image: np.ndarray, clean: np.ndarray) -> float:
    """PSNR after the least-squares affine map of ``image`` onto ``clean``.

    Real-noise references (an average of many frames) need not share the
    noisy frame's offset and contrast (W2S's are stretched separately), so
    plain PSNR there also scores how well a method's output happens to match
    the reference's intensity scale. The affine fit (as in CARE's
    evaluation) removes that and compares structure only. Each plane of a
    stack gets its own map (its reference is stretched on its own too).
    """
    fitted = np.empty(clean.shape, np.float64)
    for out, x, y in zip(fitted.reshape(-1, *clean.shape[-2:]), image.reshape(-1, *image.shape[-2:]),
                         clean.reshape(-1, *clean.shape[-2:])):
        a, b = np.polyfit(x.astype(np.float64).ravel(), y.astype(np.float64).ravel(), 1)
        out[...] = a * x + b
    return float(psnr(fitted, clean))


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    cases = load_cases(args.data, args.noise.split(","), seed=args.seed)
    budgets = [None if b.strip() == "none" else float(b) for b in args.budget.split(",")]
    variants = [parse_variant(v) for v in split_variants(args.variants)]
    rows, unavailable = [], set()
    for case in cases:
        for method in args.methods.split(","):
            if method in unavailable:
                continue
            extra = {"threads": args.threads, "seed": args.seed} if method.startswith("careamics") else {}
            runs = variants if method in ("b2u", "b2u_struct") else [("default", {})]
            for variant, overrides in runs:
                for budget in [None] if method == "bm3d" else budgets:
                    t0 = time.perf_counter()
                    try:
                        outputs = METHODS[method](case, budget, **overrides, **extra)
                    except MethodUnavailable as exc:
                        print(f"skipping {method}: {exc}", flush=True)
                        unavailable.add(method)
                        break
                    except RuntimeError as exc:  # one failed run must not lose the others
                        print(f"FAILED {method} on {case.name}: {exc}", flush=True)
                        continue
                    seconds = time.perf_counter() - t0
                    steps = outputs.pop("_steps", None)
                    precision = outputs.pop("_precision", None)
                    model_mode = outputs.pop("_mode", None)
                    for output, image in outputs.items():
                        rows.append(result_row(case, method, variant, overrides, output, image,
                                               budget, seconds, steps, precision, model_mode))
    return rows


def result_row(case, method: str, variant: str, overrides: dict, output: str, image: np.ndarray,
               budget: float | None, seconds: float, steps: int | None,
               precision: str | None = None, model_mode: str | None = None) -> dict:
    """One results row: the scores of ``image`` against ``case.clean`` and how it was made;
    printed as it is made. ``model_mode``: the output the trained model chose
    (``config.mode``), the one a user gets."""
    row = {
        "case": case.name, "data": case.data, "noise": case.noise,
        "method": method, "variant": variant, "overrides": overrides,
        "output": output, "budget_s": budget, "wall_s": round(seconds, 2),
        "steps": steps, "psnr": round(psnr(image, case.clean), 3),
        "ssim": round(ssim(image, case.clean), 4),
        "psnr_fit": round(psnr_fit(image, case.clean), 3),
        "psnr_noisy": round(psnr(case.noisy, case.clean), 3),
        "psnr_noisy_fit": round(psnr_fit(case.noisy, case.clean), 3),
        "threads": torch.get_num_threads(), "device": "cpu",
    }
    if precision is not None:
        row["precision"] = precision
    if model_mode is not None:
        row["model_mode"] = model_mode
    print(json.dumps({k: row[k] for k in ("case", "method", "variant", "output", "budget_s", "steps", "psnr", "ssim")}), flush=True)
    return row


def table(rows: list[dict]) -> str:
    """Mean PSNR / SSIM per (data, noise, method, variant, output, budget)."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["data"], r["noise"], r["method"], r["variant"], r["output"], r["budget_s"])].append(r)
    lines = ["| data | noise | method | variant | output | budget s | images | steps | noisy dB | PSNR dB | SSIM |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (data, noise, method, variant, output, budget), rs in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        steps = [r["steps"] for r in rs if r["steps"] is not None]
        lines.append(
            f"| {data} | {noise} | {method} | {variant} | {output} | {budget if budget is not None else '-'} | {len(rs)} | "
            f"{round(np.mean(steps)) if steps else '-'} | {np.mean([r['psnr_noisy'] for r in rs]):.2f} | "
            f"{np.mean([r['psnr'] for r in rs]):.2f} | {np.mean([r['ssim'] for r in rs]):.3f} |"
        )
    return "\n".join(lines)


def mean_by_seconds(rows: list[dict], metric: str = "psnr") -> dict[float, float]:
    """Mean ``metric`` per budget, for one method's rows. BM3D has no budget:
    its rows make one point at their mean run time."""
    untimed = [r["wall_s"] for r in rows if r["budget_s"] is None]
    by_x = defaultdict(list)
    for r in rows:
        by_x[r["budget_s"] if r["budget_s"] is not None else float(np.mean(untimed))].append(r[metric])
    return {x: float(np.mean(v)) for x, v in sorted(by_x.items())}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["variant"], r["output"])].append(r)
    for (method, variant, output), rs in sorted(groups.items()):
        means = mean_by_seconds(rs)
        ax.plot(list(means), list(means.values()), "o-", label=f"{method} {variant} {output}")
    ax.set_xscale("log")
    ax.set_xlabel("wall-clock budget (s), 2 CPU threads")
    ax.set_ylabel("mean PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="camera")
    parser.add_argument("--noise", default="gauss25", help="for clean data sets: gaussN, poisson")
    parser.add_argument("--budget", default="60,300",
                        help="seconds, comma list; 'none' for no time budget (a variant then sets steps)")
    parser.add_argument("--methods", default="b2u,bm3d,n2v,supervised")
    parser.add_argument("--variants", default="default", help="b2u variants name:key=value;key=value")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="quality")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    started = datetime.datetime.now()
    rows = run(args)
    write_results(rows, args, "benchmarks.quality", argv, started)


def write_results(rows: list[dict], args, module: str, argv, started: datetime.datetime) -> None:
    """``<out>/<date>-<host>-<tag>.{json,md,png}``: the rows, their table and plot,
    with the command that made them."""
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{started:%Y-%m-%d}-{socket.gethostname()}-{args.tag}"
    meta = run_meta(f"python -m {module} " + " ".join(argv or sys.argv[1:]), started,
                    threads=args.threads)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = f"# {args.tag}\n\nCommand: `{meta['command']}`  \nStarted {meta['started']} on {meta['host']} ({meta['cpu']}), torch {meta['torch']}, {args.threads} threads, CPU.\n\n{table(rows)}\n"
    stem.with_suffix(".md").write_text(md)
    plot(rows, stem.with_suffix(".png"))
    print(md)


if __name__ == "__main__":
    main()
