"""One table across result files: each method's mean PSNR per data set, noise and budget.

    python -m benchmarks.summary benchmarks/results/2026-11-24-vm-set12-*.json ...
    python -m benchmarks.summary --metric psnr_fit benchmarks/results/*-microscopy-60s-fit.json

Rows are (data, noise, budget); columns the methods (B2U in its
``visible`` output, or with ``--b2u-output model`` in the output each trained
model chose, the one a user gets: ``blind`` where the finished run's check
flipped it; rows from before 2026-12-07 do not record it). Means are over the images each method was run on, so
only compare cells with the same image count. Also prints, for images run at
two budgets, which fraction of the long run's gain over the noisy image the
short run reached. ``--metric psnr_fit`` scores after an affine intensity fit
to the reference (for real-noise references; see ``quality.psnr_fit``).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.quality import mean_by_seconds

COLUMNS = [("b2u", "visible"), ("bm3d", "bm3d"), ("careamics", "careamics"), ("n2v", "n2v"), ("supervised", "supervised")]


def load(paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        rows += [r for r in json.loads(Path(path).read_text())["rows"] if r["variant"] == "default"]
    return rows


def b2u_output(rows: list[dict], output: str) -> list[dict]:
    """The rows with B2U's ``output`` as its ``visible`` column: ``"model"``, the
    output each trained model chose (rows without ``model_mode`` are dropped)."""
    if output == "visible":
        return rows
    picked = []
    for r in rows:
        if r["method"] != "b2u":
            picked.append(r)
        elif r["output"] == (r.get("model_mode") if output == "model" else output):
            picked.append(dict(r, output="visible"))
    return picked


def table(rows: list[dict], metric: str = "psnr") -> str:
    rows = [r for r in rows if metric in r]  # older result files lack psnr_fit
    noisy_metric = {"psnr": "psnr_noisy", "psnr_fit": "psnr_noisy_fit"}[metric]
    cells = defaultdict(list)
    noisy = defaultdict(dict)
    budgets = defaultdict(set)
    bm3d = defaultdict(dict)  # BM3D has no budget: its figure per case serves every budget
    cases = defaultdict(set)  # the images each (data, noise, budget) row covers
    for r in rows:
        key = (r["data"], r["noise"])
        noisy[key][r["case"]] = r[noisy_metric]
        if r["budget_s"] is None:
            bm3d[key][r["case"]] = r[metric]
        else:
            budgets[key].add(r["budget_s"])
            cases[key + (r["budget_s"],)].add(r["case"])
            cells[key + (r["budget_s"], r["method"], r["output"])].append(r[metric])
    head = "| data | noise | budget s | images | noisy | " + " | ".join(m for m, _ in COLUMNS) + " | B2U - BM3D | B2U - CAREamics |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key in sorted(budgets):
        for budget in sorted(budgets[key]):
            vals, counts = {}, set()
            for method, output in COLUMNS:
                if method == "bm3d":
                    got = [v for c, v in bm3d[key].items() if c in cases[key + (budget,)]]
                else:
                    got = cells.get(key + (budget, method, output))
                if got:
                    vals[method] = float(np.mean(got))
                    counts.add(len(got))
            fmt = [f"{vals[m]:.2f}" if m in vals else "–" for m, _ in COLUMNS]
            diff = [f"{vals['b2u'] - vals[o]:+.2f}" if "b2u" in vals and o in vals else "–" for o in ("bm3d", "careamics")]
            n = "/".join(str(c) for c in sorted(counts))
            covered = [v for c, v in noisy[key].items() if c in cases[key + (budget,)]]
            lines.append(f"| {key[0]} | {key[1]} | {budget:g} | {n} | {np.mean(covered):.2f} | "
                         + " | ".join(fmt) + " | " + " | ".join(diff) + " |")
    return "\n".join(lines)


def gain_fraction(rows: list[dict], short: float = 60, long: float = 300) -> str:
    """Per image run at both budgets: (short - noisy) / (long - noisy) for B2U."""
    by_case = defaultdict(dict)
    for r in rows:
        if r["method"] == "b2u" and r["output"] == "visible" and r["budget_s"] in (short, long):
            by_case[r["case"]][r["budget_s"]] = (r["psnr"], r["psnr_noisy"])
    out, gains = [], []
    for case, runs in sorted(by_case.items()):
        if len(runs) == 2:
            (s, n), (lg, _) = runs[short], runs[long]
            gains.append((s - n, lg - n))
            out.append(f"- {case}: {short:g} s {s:.2f} dB, {long:g} s {lg:.2f} dB: {(s - n) / (lg - n):.1%} of the gain")
    if len(gains) > 1:
        s, lg = np.sum(gains, axis=0)
        out.append(f"- all {len(gains)}: {s / lg:.1%} of the mean gain ({s / len(gains):.2f} of {lg / len(gains):.2f} dB)")
    return "\n".join(out)


def plot(rows: list[dict], path: str, metric: str = "psnr") -> None:
    """Mean PSNR against seconds per method, over the images run at every budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted({r["budget_s"] for r in rows if r["budget_s"] is not None})
    common = set.intersection(*({r["case"] for r in rows if r["budget_s"] == b} for b in budgets))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, output in COLUMNS:
        picked = [r for r in rows if r["method"] == method and r["output"] == output and r["case"] in common]
        if picked:
            means = mean_by_seconds(picked, metric)
            label = {"b2u": "napari-b2u", "bm3d": "BM3D", "careamics": "CAREamics N2V",
                     "n2v": "N2V-style, our UNet", "supervised": "supervised bound"}[method]
            ax.plot(list(means), list(means.values()), "o-", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("seconds (training budget; BM3D: its run time), 2 CPU threads")
    ax.set_ylabel(f"mean {metric.replace('_', ' ')} (dB), {len(common)} images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="JSON files written by benchmarks.quality")
    parser.add_argument("--metric", choices=["psnr", "psnr_fit"], default="psnr")
    parser.add_argument("--plot", help="also write a PSNR-against-seconds plot (PNG) here")
    parser.add_argument("--b2u-output", default="visible",
                        choices=["visible", "model", "weighted", "blind", "visible-ensemble"],
                        help="B2U's column: this output; model: the one each trained model chose")
    args = parser.parse_args(argv)
    rows = b2u_output(load(args.results), args.b2u_output)
    print(table(rows, args.metric))
    if args.plot:
        plot(rows, args.plot, args.metric)
    fractions = gain_fraction(rows)
    if fractions:
        print("\n" + fractions)


if __name__ == "__main__":
    main()
