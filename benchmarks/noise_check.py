"""How well the noise check reads noise correlation from a noisy image alone.

    python -m benchmarks.noise_check [--tag noise-check]

For every benchmark image with a known answer it prints what
`napari_b2u.api.noise_report` measures on the noisy image, next to:

- for synthetic noise, the true lag-1 correlation of the noise that was added;
- for the real pairs (FMD, W2S), the correlation of ``noisy - reference``
  (after an affine fit of the reference and a 15-px high-pass, which removes
  illumination differences), the closest thing to the truth that a single
  frame has;
- and what a plain 5-px high-pass reads, which counts image structure as
  correlation.

Writes benchmarks/results/<date>-<host>-<tag>.{json,md}. Pure numpy, seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from benchmarks.data import load_cases
from napari_b2u.api import noise_report

RESULTS = Path(__file__).parent / "results"
SYNTHETIC = {  # noise -> true lag-1 correlation (Y, X)
    "gauss25": (0.0, 0.0),
    "gauss10": (0.0, 0.0),
    "corrx2s25": (0.0, 0.5),
    "corrx0.15s25": (0.0, 0.15),
    "corrx0.3s25": (0.0, 0.3),
    "corry0.3s25": (0.3, 0.0),
}


def lag1(r: np.ndarray, axis: int) -> float:
    a = np.moveaxis(r.astype(np.float64), axis, -1)
    return float((a[..., 1:] * a[..., :-1]).mean() / (a * a).mean())


def high_pass(image: np.ndarray, size: int) -> np.ndarray:
    image = image.astype(np.float64)
    return image - ndi.uniform_filter(image, size)


def reference_noise(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    a, b = np.polyfit(clean.ravel().astype(np.float64), noisy.ravel().astype(np.float64), 1)
    return high_pass(noisy - (a * clean + b), 15)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default="noise-check")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cases = load_cases("set12,bsd68:8", list(SYNTHETIC)) + load_cases("fmd,w2s:20", [])
    rows = []
    for case in cases:
        t0 = time.perf_counter()
        report = noise_report(case.noisy)
        seconds = time.perf_counter() - t0
        if case.noise in SYNTHETIC:
            truth = SYNTHETIC[case.noise]
        else:
            noise = reference_noise(case.noisy, case.clean)
            truth = (lag1(noise, 0), lag1(noise, 1))
        naive = high_pass(case.noisy, 5)
        rows.append({
            "case": case.name, "data": case.data, "noise": case.noise,
            "measured_y": round(report.autocorrelation["Y"][0], 3),
            "measured_x": round(report.autocorrelation["X"][0], 3),
            "true_y": round(truth[0], 3), "true_x": round(truth[1], 3),
            "highpass5_y": round(lag1(naive, 0), 3), "highpass5_x": round(lag1(naive, 1), 3),
            "correlated_axes": report.correlated_axes, "blocks": report.blocks,
            "seconds": round(seconds, 3),
        })  # fmt: skip
    started = datetime.datetime.now()
    stem = args.out / f"{started:%Y-%m-%d}-{socket.gethostname()}-{args.tag}"
    command = "python -m benchmarks.noise_check " + " ".join(argv or sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": {"command": command}, "rows": rows}, indent=1))
    md = f"# {args.tag}\n\nCommand: `{command}`\n\n{table(rows)}\n"
    stem.with_suffix(".md").write_text(md)
    print(md)


def table(rows: list[dict]) -> str:
    """Per (data, noise): the range of measured, true and high-pass lag-1 values."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["noise"]), []).append(r)
    lines = [
        "| data | noise | images | measured Y | measured X | true Y | true X | 5-px high-pass Y | 5-px high-pass X | found correlated |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def span(rs, key):
        v = [r[key] for r in rs]
        return f"{min(v):+.2f} … {max(v):+.2f}" if len(v) > 1 else f"{v[0]:+.2f}"

    for (data, noise), rs in sorted(groups.items()):
        found = sum(bool(r["correlated_axes"]) for r in rs)
        axes = sorted({r["correlated_axes"] for r in rs if r["correlated_axes"]})
        lines.append(
            f"| {data} | {noise} | {len(rs)} | {span(rs, 'measured_y')} | {span(rs, 'measured_x')} | "
            f"{span(rs, 'true_y')} | {span(rs, 'true_x')} | {span(rs, 'highpass5_y')} | "
            f"{span(rs, 'highpass5_x')} | {found} of {len(rs)} {'(' + ', '.join(axes) + ')' if axes else ''} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
