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


def textured_image(shape=(128, 128), seed=0) -> np.ndarray:
    """A clean, microscopy-like image, 0..255: cells full of fine texture (blobs
    2-3 px across, sharp edges) on a flat background: structure that a plain
    high-pass filter would count as correlated noise."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    texture = ndi.gaussian_filter(rng.normal(size=shape), 1.5)
    texture = (texture - texture.min()) / np.ptp(texture)
    cells = np.zeros(shape, bool)
    for _ in range(max(1, shape[0] * shape[1] // 2500)):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(8, 20)
        cells |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    image = np.full(shape, 40.0)
    image[cells] += 60 + 150 * texture[cells]
    return image.astype(np.float32)


def correlated_noise(shape, sigma=25.0, axis=-1, seed=0) -> np.ndarray:
    """Gaussian noise averaged over 2 neighbouring pixels along ``axis``
    (lag-1 correlation 0.5), scaled to std ``sigma``."""
    white = np.random.default_rng(seed).normal(0.0, sigma, shape)
    return ((white + np.roll(white, 1, axis)) / np.sqrt(2)).astype(np.float32)
