"""The demo: denoise a noisy copy of an image that ships with scikit-image.

No download: ``skimage.data.camera()`` is bundled with scikit-image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_b2u import api
from napari_b2u._sample_data import SIGMA as DEMO_SIGMA
from napari_b2u._sample_data import noisy_camera_data
from napari_b2u.engine.atomic import atomic_path


def demo_images(sigma: float = DEMO_SIGMA, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy)``: the 512x512 camera image (0-255, float32) and a copy
    with Gaussian noise of standard deviation ``sigma`` (not clipped): the
    napari sample's recipe."""
    noisy, clean = noisy_camera_data(sigma, seed)
    return clean, noisy


def psnr(image: np.ndarray, reference: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB."""
    mse = float(np.mean((np.asarray(image, np.float64) - reference) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)


def run_demo(
    out_dir: str | Path = "b2u-demo",
    callback: Callable[[api.Event], Any] | None = None,
    sigma: float = DEMO_SIGMA,
    **overrides: Any,
) -> dict[str, Any]:
    """Train on the noisy camera image, write the results, return the scores.

    Writes ``noisy.tif``, ``denoised.tif``, ``side_by_side.png`` (noisy,
    denoised, clean) and ``model.safetensors`` to ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean, noisy = demo_images(sigma)
    model = api.train(noisy, callback=callback, **overrides)
    denoised = model.denoise(noisy)
    _write_tiff(out / "noisy.tif", noisy)
    _write_tiff(out / "denoised.tif", denoised)
    _write_png(out / "side_by_side.png", np.concatenate([noisy, denoised, clean], axis=1))
    model.save(out / "model.safetensors")
    return {
        "psnr_noisy": psnr(noisy, clean),
        "psnr_denoised": psnr(denoised, clean),
        "steps": model.summary.steps,
        "seconds": model.summary.seconds,
        "device": model.summary.device,
        "out_dir": str(out),
    }


def _write_tiff(path: Path, image: np.ndarray) -> None:
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image.astype(np.float32))


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8)).save(tmp, format="PNG")
