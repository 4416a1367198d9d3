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

It then scores the residual check (``residual_structure``) on results with
a known amount of removed detail, on the camera image (sigma 25) and the
noisy cells sample: the clean image as "denoised", the clean image plus 30 %
of the noise (no detail removed, noise left), the clean image blurred by 1, 2
and 3 px, BM3D and napari-b2u (``--b2u-budget`` seconds of training).

Writes benchmarks/results/<date>-<host>-<tag>.{json,md}.
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
    parser.add_argument("--b2u-budget", type=float, default=60.0)
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
    structure = residual_rows(args.b2u_budget)
    started = datetime.datetime.now()
    stem = args.out / f"{started:%Y-%m-%d}-{socket.gethostname()}-{args.tag}"
    command = "python -m benchmarks.noise_check " + " ".join(argv or sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": {"command": command}, "rows": rows, "residual": structure}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    lines = ["| image | result | PSNR dB | residual_structure | warned |", "|---|---|---|---|---|"]
    lines += [f"| {r['image']} | {r['result']} | {r['psnr']} | {r['residual_structure']:.4f} | {r['warned']} |"
              for r in structure]  # fmt: skip
    md = f"# {args.tag}\n\nCommand: `{command}`\n\n{table(rows)}\n\n## The residual check\n\n" + "\n".join(lines) + "\n"
    stem.with_suffix(".md").write_text(md)
    print(md)


def residual_rows(b2u_budget: float) -> list[dict]:
    """``residual_structure`` of results with known detail loss (see the module doc)."""
    import bm3d
    from skimage.restoration import estimate_sigma

    from napari_b2u._sample_data import noisy_camera_data, noisy_stack_data
    from napari_b2u.api import train
    from napari_b2u.demo import psnr

    noisy_cam, clean_cam = noisy_camera_data()
    stack, clean_stack = noisy_stack_data()
    images = {
        "camera sigma 25": (noisy_cam, clean_cam, 25.0),
        "cells sample, plane 3": (stack[3].astype(np.float32), clean_stack[3], None),
    }
    out = []
    for image, (noisy, clean, sigma) in images.items():
        model = train(noisy, time_budget=b2u_budget, device="cpu")
        results = {
            "clean image": clean,
            "clean + 30 % of the noise": clean + 0.3 * (noisy - clean),
            "clean, blurred 1 px": ndi.gaussian_filter(clean, 1.0),
            "clean, blurred 2 px": ndi.gaussian_filter(clean, 2.0),
            "clean, blurred 3 px": ndi.gaussian_filter(clean, 3.0),
            "BM3D": bm3d.bm3d(noisy, sigma or float(estimate_sigma(noisy))).astype(np.float32),
            f"napari-b2u, {b2u_budget:.0f} s": model.denoise(noisy),
        }
        data_range = float(np.ptp(clean))
        for name, result in results.items():
            report = noise_report(noisy, result)
            out.append({
                "image": image, "result": name,
                "psnr": round(float(psnr(result, clean, data_range)), 2) if name != "clean image" else "inf",
                "residual_structure": report.residual_structure,
                "warned": any("structure" in w for w in report.warnings),
            })  # fmt: skip
    return out


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
