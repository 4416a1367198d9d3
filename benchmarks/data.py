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
    if noise.startswith("corr"):
        return (clean + correlated_noise(noise, clean.shape, rng)).astype(np.float32), None
    raise ValueError(noise)


def correlated_noise(spec: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise correlated along one axis, as a line-scanning confocal's.

    ``corr{x|y}{rho}s{sigma}``: white noise filtered by the 2 taps
    ``[1, a] / sqrt(1 + a**2)`` along X or Y, with ``a`` chosen so that the
    lag-1 correlation is ``rho`` (at most 0.5) and the std stays ``sigma``
    (0-255 scale). ``corrx2s25`` is the issue's recipe: sigma 25 averaged over
    2 horizontal taps (``rho`` 0.5, std 17.7).
    """
    axis = {"x": -1, "y": -2}[spec[4]]
    body = spec[5:]
    rho_text, _, sigma_text = body.partition("s")
    sigma = float(sigma_text)
    white = rng.normal(0.0, sigma, shape)
    if rho_text == "2":  # plain 2-tap average
        return (white + np.roll(white, 1, axis)) / 2.0
    rho = float(rho_text)
    if not 0 <= rho <= 0.5:
        raise ValueError(f"{spec}: a 2-tap filter gives a lag-1 correlation in [0, 0.5]")
    a = (1 - np.sqrt(1 - 4 * rho * rho)) / (2 * rho) if rho > 0 else 0.0
    return (white + a * np.roll(white, 1, axis)) / np.sqrt(1 + a * a)


def phantom3d(shape: tuple[int, int, int] = (48, 160, 160), seed: int = 0) -> np.ndarray:
    """A synthetic fluorescence volume, 0..255, whose structure continues from
    slice to slice: filaments (thin tubes along smooth random 3D paths) and
    nuclei (soft ellipsoids, elongated in Z as a microscope's PSF makes them)
    over a dim, slowly varying background. No public 3D image ships offline
    with the packages used here, hence a phantom."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    d, h, w = shape
    zz, yy, xx = np.mgrid[:d, :h, :w].astype(np.float32)
    vol = 0.08 + 0.04 * np.sin(xx / 37.0) * np.cos(yy / 29.0)
    for _ in range(int(8 * d * h * w / (32 * 128 * 128))):  # nuclei
        c = rng.uniform((0, 0, 0), (d, h, w))
        r = rng.uniform((4, 8, 8), (7, 14, 14))
        dist = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
        vol += 0.45 / (1 + np.exp(np.minimum((dist - 1) * 6, 50)))
    lines = np.zeros(shape, np.float32)
    for _ in range(int(14 * d * h * w / (32 * 128 * 128))):  # filaments
        p = rng.uniform((0, 0, 0), (d, h, w))
        v = rng.normal(size=3)
        v[0] *= 0.3
        for _ in range(400):
            v += rng.normal(scale=0.15, size=3)
            v /= np.linalg.norm(v)
            p = p + v
            i, j, k = np.round(p).astype(int)
            if 0 <= i < d and 0 <= j < h and 0 <= k < w:
                lines[i, j, k] = 1.0
    vol += 2.5 * ndi.gaussian_filter(lines, (1.2, 0.9, 0.9))
    vol = ndi.gaussian_filter(vol, (1.0, 0.6, 0.6))  # the microscope's blur, longer in Z
    return (255.0 * vol / vol.max()).astype(np.float32)


def poisson_gaussian(clean: np.ndarray, peak: float, read: float, seed: int) -> np.ndarray:
    """Shot noise at ``peak`` photons for the brightest value, plus Gaussian read
    noise of ``read`` photons, back on the 0..255 scale."""
    rng = np.random.default_rng(seed)
    photons = rng.poisson(clean / 255.0 * peak) + rng.normal(0.0, read, clean.shape)
    return (photons / peak * 255.0).astype(np.float32)


class _selection:
    """Which files of a sorted list ``:N`` (the first N) or ``:A-B`` (1-based) picks."""

    def __init__(self, count: str) -> None:
        first, _, last = count.partition("-")
        if not count:
            self.lo, self.hi = 0, None
        elif last:
            self.lo, self.hi = int(first) - 1, int(last)
        else:
            self.lo, self.hi = 0, int(first)

    def __contains__(self, i: int) -> bool:
        return i >= self.lo and (self.hi is None or i < self.hi)


def load_cases(spec: str, noises: list[str], seed: int = 0) -> list[Case]:
    """``spec``: comma list of ``camera``, ``set12[:N]``, ``bsd68[:N]``, ``fmd[:N]``, ``w2s[:N]``
    (``name:A-B`` takes files A to B, 1-based, of the sorted list).

    ``fmd-stack[:N]`` and ``w2s-stack[:N]`` give the same images as one
    ``(N, Y, X)`` stack case: trained on together, scored over all planes.
    """
    cases: list[Case] = []
    for item in spec.split(","):
        name, _, count = item.partition(":")
        picked = _selection(count)
        if name.endswith("-stack"):
            planes = load_cases(f"{name[:-6]}:{count}" if count else name[:-6], noises, seed)
            if planes:
                cases.append(Case(f"{name} x{len(planes)}", name, planes[0].noise,
                                  np.stack([c.clean for c in planes]), np.stack([c.noisy for c in planes]), None))
            continue
        if name == "phantom3d":  # one volume, Poisson-Gaussian noise (peak 20 photons, read 2)
            clean = phantom3d(seed=seed)
            noisy = poisson_gaussian(clean, 20.0, 2.0, seed)
            cases.append(Case("phantom3d pg20", name, "pg20", clean, noisy, None))
            continue
        if name == "camera":
            from skimage import data

            cleans = [(0, "camera", data.camera().astype(np.float32))]
        elif name in ("set12", "bsd68"):
            files = sorted((SHARED / name).glob("*.png"))
            cleans = [(i, f"{name}/{f.stem}", _png(f)) for i, f in enumerate(files) if i in picked]
        elif name in ("fmd", "w2s"):
            files = sorted((SHARED / name / "noisy").glob("*.png"))
            if name == "w2s":  # one channel per field of view, spread over the test split
                files = [f for f in files if f.stem.endswith("_0")]
            for f in (f for i, f in enumerate(files) if i in picked):
                clean = _png(SHARED / name / "gt" / f.name)
                cases.append(Case(f"{name}/{f.stem}", name, "real", clean, _png(f), None))
            if not files:
                print(f"skipping {name}: no data under {SHARED / name}")
            continue
        else:
            raise ValueError(f"unknown data set {name!r}")
        if not cleans:
            print(f"skipping {name}: no data under {SHARED / name}")
        for i, label, clean in cleans:  # the noise seed follows the file, not the selection
            for noise in noises:
                noisy, sigma = add_noise(clean, noise, seed + i)
                cases.append(Case(f"{label} {noise}", name, noise, clean, noisy, sigma))
    return cases
