"""Helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: A network and budget small enough for a 2-core CI machine.
TINY = dict(depth=2, features=8, patch_size=32, batch_size=2, device="cpu", seed=0)


def smooth_image(shape=(64, 64), seed=0) -> np.ndarray:
    """A clean, smooth test image in 0..255 (float32)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    img = 128 + 60 * np.sin(xx / 7.0 + rng.uniform(0, 6)) * np.cos(yy / 9.0)
    img += 40 * ((xx - shape[1] / 2) ** 2 + (yy - shape[0] / 2) ** 2 < (shape[0] / 4) ** 2)
    return img.astype(np.float32)


def psnr(image: np.ndarray, reference: np.ndarray, data_range: float = 255.0) -> float:
    mse = float(np.mean((np.asarray(image, np.float64) - reference) ** 2))
    return 10 * np.log10(data_range**2 / mse)
