"""Sample data for napari: noisy images with their clean references.

Built from images that ship inside scikit-image (no download); no torch
import, so opening a sample is quick.
"""

from __future__ import annotations

import numpy as np

SIGMA = 25.0
PHOTONS = 20.0  # mean photon count of the stack's brightest structures


def noisy_camera_data(sigma: float = SIGMA, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, clean)``: the 512x512 camera image with Gaussian noise, float32."""
    from skimage import data

    clean = data.camera().astype(np.float32)
    noisy = clean + np.random.default_rng(seed).normal(0.0, sigma, clean.shape).astype(np.float32)
    return noisy, clean


def noisy_stack_data(
    frames: int = 8, size: int = 256, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, clean)``: a drifting T x Y x X crop of scikit-image's ``cell``
    microscopy image with Poisson (shot) plus Gaussian (read) noise.

    ``noisy`` is uint16 camera counts, ``clean`` the expected counts (float32).
    """
    from skimage import data

    cell = data.cell().astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    clean = np.stack(
        [cell[8 + 3 * t : 8 + 3 * t + size, 16 + 2 * t : 16 + 2 * t + size] for t in range(frames)]
    )
    clean = 100.0 + PHOTONS * clean / clean.max() * 10.0  # offset + signal in counts
    noisy = rng.poisson(clean - 100.0) + 100.0 + rng.normal(0.0, 2.0, clean.shape)
    return np.clip(noisy, 0, 65535).round().astype(np.uint16), clean.astype(np.float32)


def noisy_camera() -> list[tuple]:
    """napari sample: noisy camera (2D) and its clean reference."""
    noisy, clean = noisy_camera_data()
    limits = [0.0, 255.0]
    return [
        (
            clean,
            {"name": "camera (clean reference)", "visible": False, "contrast_limits": limits},
            "image",
        ),
        (noisy, {"name": "camera (noisy)", "contrast_limits": limits}, "image"),
    ]


def noisy_stack() -> list[tuple]:
    """napari sample: noisy T x Y x X fluorescence stack and its clean reference."""
    noisy, clean = noisy_stack_data()
    limits = [float(clean.min()), float(clean.max())]
    meta = {"axis_labels": ("t", "y", "x"), "scale": (1.0, 0.1, 0.1), "units": ("s", "um", "um")}
    return [
        (
            clean,
            {
                "name": "cells (clean reference)",
                "visible": False,
                "contrast_limits": limits,
                **meta,
            },
            "image",
        ),
        (noisy, {"name": "cells (noisy)", "contrast_limits": limits, **meta}, "image"),
    ]
