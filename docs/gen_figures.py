"""Regenerate the figures of docs/method.md (docs/images/method_*.png) from
napari-b2u's own code.

Run from the repository root (CPU only; under a minute on an idle 2-core machine):

    python docs/gen_figures.py

Figures:

- ``method_masker.png``: ``global_masker`` on a small crop of
  ``skimage.data.camera()``: the K masks and the K masked copies;
- ``method_schedule.png``: the lambda and learning-rate schedules;
- ``method_outputs.png``: blind, visible and weighted outputs of a short
  training run (150 steps of a small network) on a noisy crop;
- ``method_losses.png``: the loss curves of that run, with lambda.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OUT = Path(__file__).parent / "images"
SIGMA = 25.0
DPI = 100


def camera_crops(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy)``: a 128x128 crop of the camera image, 0-255, and a
    copy with Gaussian noise of standard deviation ``SIGMA``."""
    from skimage import data

    clean = data.camera()[80:208, 200:328].astype(np.float32)
    noise = np.random.default_rng(seed).normal(0.0, SIGMA, clean.shape).astype(np.float32)
    return clean, clean + noise


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((image.astype(np.float64) - reference) ** 2))
    return 10.0 * np.log10(255.0**2 / mse)


def _show(ax, image, title, vmin=0.0, vmax=255.0, cmap="gray"):
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def fig_masker(noisy: np.ndarray, cell: int = 2) -> None:
    """The masks and the masked copies of a 16x16 crop."""
    import torch

    from napari_b2u.core import global_masker

    crop = noisy[56:72, 20:36]  # across the edge of the coat
    lo, hi = np.percentile(crop, [1, 99])
    y = torch.from_numpy(crop.copy())[None, None]
    volume, masks = global_masker(y, cell)
    k = cell * cell
    fig, axes = plt.subplots(2, k + 1, figsize=(2.0 * (k + 1), 4.6))
    _show(axes[0, 0], crop, "noisy crop y", lo, hi)
    axes[1, 0].axis("off")
    axes[1, 0].text(
        0.5,
        0.5,
        f"cell = {cell}\nK = {k} copies\n\nhidden pixels are\nreplaced by the\n"
        "mean of their\n8 neighbours",
        ha="center",
        va="center",
        fontsize=9,
    )
    for i in range(k):
        _show(axes[0, i + 1], masks[i, 0].numpy(), f"mask {i}", 0.0, 1.0, "magma")
        _show(axes[1, i + 1], volume[i, 0].numpy(), f"masked copy {i}", lo, hi)
    fig.suptitle("Global masker: every pixel is hidden in exactly one copy", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "method_masker.png", dpi=DPI)
    plt.close(fig)


def fig_schedule() -> None:
    """lambda and lr against the fraction of training, default TrainConfig."""
    from napari_b2u.config import TrainConfig
    from napari_b2u.core import lambda_schedule, lr_schedule

    c = TrainConfig()
    p = np.linspace(0.0, 1.0, 501)
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    for t1, style in ((c.t1, "-"), (0.8, "--")):
        lam = [lambda_schedule(x, t1, c.lam0, c.lam1) for x in p]
        ax.plot(p, lam, style, color="tab:green", label=f"lambda, t1 = {t1}")
    ax.set_xlabel("fraction of training (the further of steps and time)")
    ax.set_ylabel("lambda")
    ax2 = ax.twinx()
    lr = [lr_schedule(x, c.lr, c.lr_milestones, c.lr_gamma) for x in p]
    ax2.plot(p, lr, color="tab:blue", label="learning rate")
    ax2.set_yscale("log")
    ax2.set_ylabel("learning rate")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(
        lines,
        [line.get_label() for line in lines],
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.62, 1.0),
    )
    ax.set_title(
        f"Schedules (lam0 = {c.lam0}, lam1 = {c.lam1}, lr = {c.lr} halved at "
        f"{', '.join(f'{m:g}' for m in c.lr_milestones)})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(OUT / "method_schedule.png", dpi=DPI)
    plt.close(fig)


def train_small(noisy: np.ndarray, steps: int):
    """A short CPU training run; returns the model and its Step events."""
    from napari_b2u import api

    events = []

    def keep(event):
        if isinstance(event, api.Step):
            events.append(event)

    model = api.train(
        noisy,
        steps=steps,
        time_budget=None,
        depth=3,
        features=16,
        device="cpu",
        seed=0,
        callback=keep,
    )
    return model, events


def fig_outputs(model, clean: np.ndarray, noisy: np.ndarray) -> None:
    outs = {mode: model.denoise(noisy, mode=mode) for mode in ("blind", "visible", "weighted")}
    fig, axes = plt.subplots(1, 5, figsize=(12.5, 3.2))
    _show(axes[0], noisy, f"noisy y\n{psnr(noisy, clean):.1f} dB")
    for ax, (mode, out) in zip(axes[1:4], outs.items()):
        _show(ax, out, f"{mode}\n{psnr(out, clean):.1f} dB")
    _show(axes[4], clean, "clean reference\n(not used in training)")
    s = model.summary
    fig.suptitle(
        f"Outputs after {s.steps} training steps (depth {model.net.depth}, "
        f"{model.net.features} features); PSNR against the clean image",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(OUT / "method_outputs.png", dpi=DPI)
    plt.close(fig)


def fig_losses(events) -> None:
    step = [e.step for e in events]
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    ax.plot(step, [e.loss for e in events], color="0.4", label="total")
    ax.plot(step, [e.l_rev for e in events], color="tab:blue", label="L_rev")
    ax.plot(step, [e.l_reg for e in events], color="tab:orange", label="L_reg")
    ax.plot(
        step,
        [e.l_rev / (e.lam + 1) ** 2 for e in events],
        color="black",
        linewidth=2,
        label="L_rev / (λ+1)² (the widget's curve)",
    )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (normalised units)")
    ax2 = ax.twinx()
    ax2.plot(step, [e.lam for e in events], "--", color="tab:green", label="lambda")
    ax2.set_ylabel("lambda")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="center right")
    ax.set_title("L_rev grows with lambda by design; L_rev / (λ+1)² falls as the model learns", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT / "method_losses.png", dpi=DPI)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps (default 150)")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    clean, noisy = camera_crops()
    fig_masker(noisy)
    fig_schedule()
    model, events = train_small(noisy, args.steps)
    fig_outputs(model, clean, noisy)
    fig_losses(events)
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('method_*.png')))} to {OUT}")


if __name__ == "__main__":
    main()
