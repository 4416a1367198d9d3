"""Benchmark images: clean/noisy pairs with their provenance.

Synthetic noise is seeded; real-noise pairs come from ``../shared/data``
(see its README). Missing data sets are skipped with a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Case:
    name: str  # e.g. "set12/01 gauss25"
    data: str  # data set
    noise: str  # e.g. "gauss25", "poisson", "real"
    clean: np.ndarray  # float32, 0..255
    noisy: np.ndarray  # float32
    sigma: float | None  # true sigma (synthetic Gaussian) or None


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path)).astype(np.float32)


def add_noise(clean: np.ndarray, noise: str, seed: int) -> tuple[np.ndarray, float | None]:
    rng = np.random.default_rng(seed)
    if noise.startswith("gauss"):
        sigma = float(noise[5:])
        return (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32), sigma
    if noise == "poisson":  # peak 30 photons: strong shot noise
        peak = 30.0
        return (rng.poisson(clean / 255.0 * peak) / peak * 255.0).astype(np.float32), None
    raise ValueError(noise)


def load_cases(spec: str, noises: list[str], seed: int = 0) -> list[Case]:
    """``spec``: comma list of ``camera``, ``set12[:N]``, ``bsd68[:N]``, ``fmd[:N]``, ``w2s[:N]``.

    ``fmd-stack[:N]`` and ``w2s-stack[:N]`` give the same images as one
    ``(N, Y, X)`` stack case: trained on together, scored over all planes.
    """
    cases: list[Case] = []
    for item in spec.split(","):
        name, _, count = item.partition(":")
        n = int(count) if count else None
        if name.endswith("-stack"):
            planes = load_cases(f"{name[:-6]}:{count}" if count else name[:-6], noises, seed)
            if planes:
                cases.append(Case(f"{name} x{len(planes)}", name, planes[0].noise,
                                  np.stack([c.clean for c in planes]), np.stack([c.noisy for c in planes]), None))
            continue
        if name == "camera":
            from skimage import data

            cleans = [("camera", data.camera().astype(np.float32))]
        elif name in ("set12", "bsd68"):
            files = sorted((SHARED / name).glob("*.png"))[:n]
            cleans = [(f"{name}/{f.stem}", _png(f)) for f in files]
        elif name in ("fmd", "w2s"):
            files = sorted((SHARED / name / "noisy").glob("*.png"))
            if name == "w2s":  # one channel per field of view, spread over the test split
                files = [f for f in files if f.stem.endswith("_0")]
            for f in files[:n]:
                clean = _png(SHARED / name / "gt" / f.name)
                cases.append(Case(f"{name}/{f.stem}", name, "real", clean, _png(f), None))
            if not files:
                print(f"skipping {name}: no data under {SHARED / name}")
            continue
        else:
            raise ValueError(f"unknown data set {name!r}")
        if not cleans:
            print(f"skipping {name}: no data under {SHARED / name}")
        for i, (label, clean) in enumerate(cleans):
            for noise in noises:
                noisy, sigma = add_noise(clean, noise, seed + i)
                cases.append(Case(f"{label} {noise}", name, noise, clean, noisy, sigma))
    return cases
