"""Measuring the noise of an image, and whether a denoised result left only noise.

Blind-spot methods assume that each pixel's noise is independent of its
neighbours'. `noise_report` measures the noise's correlation between
neighbouring pixels so that image structure does not count as correlation,
and, given a denoised image, checks that the residual (noisy - denoised)
looks like noise rather than image detail.

How the correlation is measured (pure numpy, on sampled planes and blocks):

1. Cut planes into 16 x 16 blocks; leave out blocks touching the data's
   minimum or maximum (clipped or saturated pixels have no noise to measure).
2. In each block, subtract the least-squares quadratic surface: smooth
   shading is structure, not noise.
3. Within each quarter of the blocks by brightness (noise often grows with
   brightness), keep the 30 % with the least residual variance: the flattest,
   where what is left is mostly noise.
4. Take the median over those blocks of each block's lag-1 and lag-2
   correlation along Y and X (each block normalised by its own variance,
   so dim and bright regions count alike; the median ignores the few blocks
   that still hold an edge).
5. Undo the known effect of step 2 on the numbers exactly: removing a
   quadratic from a 16 x 16 block makes white noise look slightly
   anti-correlated; the correction solves for the correlation that would
   give the measured values.

On Set12 images with white Gaussian noise (sigma 25) this gives 0.00-0.10
(texture-dense images at the top); with noise averaged over 2 horizontal
taps (true lag-1 correlation 0.50) 0.46-0.52 along X and 0.00-0.14 along Y
(benchmarks/noise_check.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from napari_b2u.engine.data import Planes, PlaneSet

#: Lag-1 correlation at and above which an axis breaks the blind-spot
#: assumption enough to handle it (chosen by benchmarks/correlated.py).
CORRELATED = 0.15
#: Side of the blocks the noise is measured in.
BLOCK = 16
#: Fraction of the blocks in each brightness quarter that are used (the flattest).
FLAT_FRACTION = 0.3
#: Planes and blocks per plane that a report reads at most (fast on large stacks).
MAX_PLANES = 8
MAX_BLOCKS = 4096
#: Share of the image's detail in the residual above which the result is
#: flagged as over-smoothed (good denoisers: <= 0.03; a 2-px blur: 0.05-0.09).
STRUCTURE_WARNING = 0.04
AXES = ("Y", "X")
#: Share of the result's pixels beyond the noisy input's range (by more than
#: the noise level) from which a denoising is flagged as failed in places:
#: 0 to 4e-6 for the working results measured, 0.002-0.005 where a network turned
#: fine texture into bands (Set12 09, correlated noise; docs/benchmarks.md).
OUT_OF_RANGE_WARNING = 1e-4
#: A visible output whose mean squared residual is this many times the blind
#: output's is flagged as the worse one (`visible_check`).
VISIBLE_MARGIN = 1.05


@dataclass(frozen=True)
class NoiseReport:
    """What `noise_report` measured, and what it means.

    Attributes
    ----------
    ok : bool
        False when something was found that the user should act on.
    warnings : list of str
        One sentence each: what was found and what to do.
    noise_std : float
        Estimated standard deviation of the noise, in the image's units.
    autocorrelation : dict
        Axis (``"Y"``, ``"X"``) -> ``(lag 1, lag 2)`` correlation of the noise
        between pixels 1 and 2 apart along that axis (0: independent).
    correlated_axes : str
        Axes whose lag-1 correlation is at least `CORRELATED` (``""``, ``"X"``,
        ``"Y"`` or ``"YX"``): there the blind-spot assumption does not hold.
    subsample : tuple of int
        ``(sy, sx)``: the pixel-shuffle sub-sampling ``decorrelate="auto"``
        applies (2 along a correlated axis, 3 when lag 2 is correlated too).
    blocks : int
        Number of flat blocks the noise figures rest on.
    planes : int
        Number of planes read.
    residual_mean : float or None
        Mean of ``noisy - denoised`` in units of ``noise_std`` (after denoising only).
    residual_std_ratio : float or None
        Standard deviation of the residual over ``noise_std``: about 1 when the
        denoiser removed the noise and no more.
    residual_autocorrelation : dict or None
        As ``autocorrelation``, of the residual.
    residual_structure : float or None
        How much of the image's detail (structure 2-6 px across) the residual
        holds, as a share of the detail left in the result: near 0 when only
        noise was removed (napari-b2u and BM3D: at most 0.03 in our tests), 0.05
        to 0.09 for a 2-px blur, 0.24-0.36 for a 3-px blur.
    out_of_range : float or None
        Share of the result's pixels outside the noisy input's range (per
        channel) widened by the noise level on each side (``noise_std``, or
        the residual's std where the noise cannot be measured); NaN and inf
        count as outside. 0 for a working denoiser, which only removes noise;
        from `OUT_OF_RANGE_WARNING` up, the network failed in places.
    """

    ok: bool
    warnings: list[str]
    noise_std: float
    autocorrelation: dict[str, tuple[float, float]]
    correlated_axes: str
    subsample: tuple[int, int]
    blocks: int
    planes: int
    residual_mean: float | None = None
    residual_std_ratio: float | None = None
    residual_autocorrelation: dict[str, tuple[float, float]] | None = None
    residual_structure: float | None = None
    out_of_range: float | None = None
    handled: tuple[int, int] | None = None

    @property
    def after_denoising(self) -> bool:
        """Whether the report includes the residual checks."""
        return self.residual_std_ratio is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers and warnings, plus the summary."""
        out = asdict(self)
        out["summary"] = self.summary()
        out = _rounded(out)
        if self.out_of_range is not None:  # small shares matter: 3 significant digits
            out["out_of_range"] = float(f"{self.out_of_range:.3g}")
        return out

    def headline(self) -> str:
        """One line: the noise found, the handling, and (after denoising) the verdict."""
        if self.blocks == 0:
            return "noise not measurable (no flat regions)"
        y1, x1 = self.autocorrelation["Y"][0], self.autocorrelation["X"][0]
        applied = self.handled if self.handled is not None else self.subsample
        if self.correlated_axes:
            text = f"noise correlated along {self.correlated_axes} (Y {y1:+.2f}, X {x1:+.2f})"
            text += (
                f": {describe_subsample(applied)}"
                if _covers(applied, self.correlated_axes)
                else ": NOT handled (use decorrelate='auto')"
            )
        else:
            text = f"noise independent (Y {y1:+.2f}, X {x1:+.2f})"
            if applied != (1, 1):
                text += f": {describe_subsample(applied)}"
        if self.after_denoising:
            problems = [w for w in self.warnings if w.startswith("After denoising")]
            text += "; result: " + (
                "check the residual (see the warnings)"
                if problems
                else f"residual looks like noise (structure {self.residual_structure:.3f})"
            )
        return text

    def summary(self) -> str:
        """One paragraph in plain words: what was found and what to do."""
        ac = self.autocorrelation
        if self.blocks == 0:
            return (
                "The image is too small or too uniform to measure its noise (no flat 16 x 16 "
                "pixel regions were found). Denoising works as usual; the noise checks are "
                "not available."
            )
        x1, y1 = ac["X"][0], ac["Y"][0]
        level = f"The noise level is about {self.noise_std:.3g} (in the image's units)."
        if not self.correlated_axes:
            text = (
                f"{level} The noise looks independent from pixel to pixel (correlation "
                f"between neighbours {y1:+.2f} along Y, {x1:+.2f} along X), as "
                "Blind2Unblind assumes, so it is trained on the image as it is."
            )
        else:
            text = (
                f"{level} The noise is correlated between neighbouring pixels "
                f"({y1:+.2f} along Y, {x1:+.2f} along X), as a scanning confocal, camera "
                "processing or resampling makes it. Blind2Unblind assumes independent noise "
                "and would learn to keep part of it. "
            )
            applied = self.handled if self.handled is not None else self.subsample
            if _covers(applied, self.correlated_axes):
                text += (
                    f"So it is trained and applied on {describe_subsample(applied)}, where the "
                    "correlation has gone (decorrelate='auto' chooses this; keep it)."
                )
            else:
                text += (
                    f"This model was trained on {describe_subsample(applied)}: train again "
                    "with decorrelate='auto' (the default), which handles it."
                )
        if self.after_denoising:
            text += " " + self._residual_summary()
        return text

    def _residual_summary(self) -> str:
        problems = [w for w in self.warnings if w.startswith("After denoising")]
        if problems:
            return " ".join(problems)
        return (
            "After denoising, the residual (noisy - denoised) looks like noise: its size "
            f"matches the noise ({self.residual_std_ratio:.2f} of the noise level) and it holds "
            f"little image structure ({self.residual_structure:.3f} of the detail in the result, "
            "where a 2-pixel blur gives about 0.05), so nothing suggests that detail was removed. "
            "Look at the Residual layer to check by eye."
        )


def noise_report(
    noisy: Any,
    denoised: Any | None = None,
    axes: str | None = None,
    *,
    handled: tuple[int, int] | None = None,
    max_planes: int = MAX_PLANES,
    seed: int = 0,
) -> NoiseReport:
    """Measure the noise of ``noisy`` and, given ``denoised``, check the residual.

    ``handled`` is the sub-sampling the model applied (``Model.subsample``);
    correlated noise is a warning unless it covers the correlated axes. See
    `napari_b2u.api.noise_report` for the other parameters.
    """
    planes = noisy if isinstance(noisy, PlaneSet) else Planes(noisy, axes)
    picks = sample_planes(planes.n, max_planes)
    rng = np.random.default_rng(seed)
    data = [planes.plane(i, cache=False) for i in picks]
    stats = _block_stats(data, rng)
    warnings: list[str] = []
    correlated = "".join(a for a in AXES if stats.blocks and stats.corr[a][0] >= CORRELATED)
    if correlated and not (handled is not None and _covers(handled, correlated)):
        warnings.append(
            f"The noise is correlated along {' and '.join(correlated)} (lag-1 correlation "
            + ", ".join(f"{a} {stats.corr[a][0]:+.2f}" for a in correlated)
            + f"), which breaks Blind2Unblind's assumption of independent noise: train with "
            f"decorrelate='auto' (the default) or '{correlated}'."
        )
    residual: dict[str, Any] = {}
    if denoised is not None:
        if isinstance(planes, PlaneSet):
            raise TypeError("A residual check needs one noisy array and its denoised result.")
        out = Planes(denoised, planes.axes)
        if out.shape != planes.shape:
            raise ValueError(
                f"denoised has shape {out.shape}, the noisy image {planes.shape}; pass the "
                "denoised result of this image."
            )
        clean = [out.plane(i, cache=False) for i in picks]
        residual = _residual_checks(data, clean, stats, rng)
        warnings += residual.pop("warnings")
    return NoiseReport(
        ok=not warnings,
        warnings=warnings,
        noise_std=stats.noise_std,
        autocorrelation=stats.corr,
        correlated_axes=correlated,
        subsample=strides_for(stats.corr, correlated),
        blocks=stats.blocks,
        planes=len(picks),
        handled=None if handled is None else (int(handled[0]), int(handled[1])),
        **residual,
    )


def visible_check(noisy: np.ndarray, visible: np.ndarray, blind: np.ndarray) -> str | None:
    """Whether the ``visible`` output is worse than the ``blind`` one, without labels.

    The blind output of a pixel never sees that pixel's noise, so its mean
    squared residual ``(noisy - blind)**2`` is the noise variance plus its
    error; the visible output can only lower its residual by keeping noise.
    So a visible residual at least as large as the blind one means a larger
    error (under the blind-spot assumption). It is one-sided: a smaller
    visible residual does not prove the visible output better. Measured
    (docs/benchmarks.md): on Set12 and FMD widefield trajectories, every copy
    with the larger visible residual had the worse visible output (by 0.7-5
    dB); on 21 finished runs on white microscopy noise it read 0.65-0.87
    with the visible output better in each. On noise correlated between
    pixels the premise fails (FMD widefield: a finished run read 1.107 with
    the visible output 0.37 dB better). Flagged from `VISIBLE_MARGIN` times
    the blind residual up, so that barely trained networks, whose two
    outputs are about equal, are not.
    Returns what to do, or None.
    """
    res_visible, res_blind = visible_residuals(noisy, visible, blind)
    if not res_blind > 0 or res_visible < VISIBLE_MARGIN * res_blind:
        return None
    return (
        f"The 'visible' output departs further from the noisy image than the 'blind' one "
        f"(mean squared residual {res_visible:.4g} against {res_blind:.4g} on the training "
        "sample), which only a worse output does: use the 'blind' output. This happens "
        "after long runs, and on noise correlated between pixels (widefield composites)."
    )


def visible_residuals(
    noisy: np.ndarray, visible: np.ndarray, blind: np.ndarray
) -> tuple[float, float]:
    """Mean squared residuals ``(noisy - visible)**2`` and ``(noisy - blind)**2``,
    which `visible_check` compares."""
    noisy = noisy.astype(np.float64)
    res_visible, res_blind = (float(np.mean((noisy - out) ** 2)) for out in (visible, blind))
    return res_visible, res_blind


def strides_for(corr: dict[str, tuple[float, float]], correlated: str) -> tuple[int, int]:
    """Sub-sampling per axis: 2 where lag 1 is correlated, 3 where lag 2 is too."""
    sy, sx = (1 if a not in correlated else 3 if corr[a][1] >= CORRELATED else 2 for a in AXES)
    return sy, sx


def describe_subsample(subsample: tuple[int, int]) -> str:
    """``(1, 2)`` -> ``"every 2nd column"``; ``(1, 1)`` -> ``"the full image"``."""
    parts = [
        f"every {s}{'nd' if s == 2 else 'rd'} {'row' if a == 'Y' else 'column'}"
        for a, s in zip(AXES, subsample)
        if s > 1
    ]
    return " and ".join(parts) if parts else "the full image (no sub-sampling)"


def _covers(subsample: tuple[int, int], correlated: str) -> bool:
    return all(subsample[AXES.index(a)] > 1 for a in correlated)


# --------------------------------------------------------------------- blocks
@dataclass
class _Stats:
    corr: dict[str, tuple[float, float]]
    noise_std: float
    blocks: int


def sample_planes(n: int, k: int = MAX_PLANES) -> list[int]:
    """The (at most ``k``) evenly spread planes of ``n`` that a report reads."""
    return [int(i) for i in np.unique(np.linspace(0, n - 1, min(n, k)).round())]


def _blocks(plane: np.ndarray, rng: np.random.Generator, block: int = BLOCK) -> np.ndarray:
    """Non-overlapping ``block`` x ``block`` blocks of every channel, ``(n, B, B)``,
    at most `MAX_BLOCKS` of them (a random subset)."""
    c, h, w = plane.shape
    nh, nw = h // block, w // block
    if nh == 0 or nw == 0:
        return np.empty((0, block, block), np.float64)
    cut = plane[:, : nh * block, : nw * block].astype(np.float64)
    out = cut.reshape(c, nh, block, nw, block).transpose(0, 1, 3, 2, 4).reshape(-1, block, block)
    if len(out) > MAX_BLOCKS:
        out = out[rng.choice(len(out), MAX_BLOCKS, replace=False)]
    return out


def _detrend(blocks: np.ndarray) -> np.ndarray:
    """Residual of each block after its least-squares quadratic surface."""
    n, b, _ = blocks.shape
    flat = blocks.reshape(n, -1)
    return (flat @ _projector(b)).reshape(n, b, b)


def _projector(b: int) -> np.ndarray:
    """``I - P``, with ``P`` the projection on quadratics over a ``b`` x ``b`` block."""
    yy, xx = np.mgrid[:b, :b].astype(np.float64)
    yy, xx = (yy - (b - 1) / 2) / b, (xx - (b - 1) / 2) / b
    basis = np.stack([np.ones_like(yy), yy, xx, yy * yy, xx * xx, yy * xx]).reshape(6, -1).T
    return np.eye(b * b) - basis @ np.linalg.pinv(basis)


def _lag_ratios(res: np.ndarray, axis: str) -> tuple[np.ndarray, np.ndarray]:
    """Per block: mean product of values 1 and 2 apart along ``axis``, over the
    block's mean square."""
    a = res if axis == "X" else res.transpose(0, 2, 1)
    power = np.mean(a * a, axis=(1, 2))
    lag1 = np.mean(a[:, :, :-1] * a[:, :, 1:], axis=(1, 2)) / power
    lag2 = np.mean(a[:, :, :-2] * a[:, :, 2:], axis=(1, 2)) / power
    return lag1, lag2


_TERMS: dict[int, np.ndarray] = {}


def _debias_terms(b: int) -> np.ndarray:
    """How detrending maps a noise correlation to measured values.

    For noise with correlation ``rho1``, ``rho2`` at lags 1 and 2 along one axis
    (0 beyond), the expected detrended power and lag products are linear in
    ``(1, rho1, rho2)``; row ``k`` holds (power, lag-1 product, lag-2 product)
    for the ``k``-th of those terms (the same for both axes, by symmetry).
    """
    if b not in _TERMS:
        r = _projector(b)
        idx = np.arange(b * b).reshape(b, b)
        terms = []
        for lag in (0, 1, 2):
            shift = np.zeros((b * b, b * b))
            if lag:
                shift[idx[:, :-lag].ravel(), idx[:, lag:].ravel()] = 1
                shift = shift + shift.T
            else:
                shift = np.eye(b * b)
            cov = r @ shift @ r
            terms.append(
                (
                    np.trace(cov) / (b * b),
                    cov[idx[:, :-1].ravel(), idx[:, 1:].ravel()].mean(),
                    cov[idx[:, :-2].ravel(), idx[:, 2:].ravel()].mean(),
                )
            )
        _TERMS[b] = np.array(terms)
    return _TERMS[b]


def _unbias(m1: float, m2: float, b: int = BLOCK) -> tuple[float, float]:
    """The lag-1/lag-2 correlation that detrending turns into ``m1``, ``m2``."""
    t = _debias_terms(b)
    power, p1, p2 = t[:, 0], t[:, 1], t[:, 2]
    a = np.array([[m1 * power[1] - p1[1], m1 * power[2] - p1[2]],
                  [m2 * power[1] - p2[1], m2 * power[2] - p2[2]]])  # fmt: skip
    rhs = np.array([p1[0] - m1 * power[0], p2[0] - m2 * power[0]])
    try:
        rho = np.linalg.solve(a, rhs)
    except np.linalg.LinAlgError:
        return m1, m2
    return float(np.clip(rho[0], -1, 1)), float(np.clip(rho[1], -1, 1))


def _block_stats(
    data: list[np.ndarray], rng: np.random.Generator, flat_only: bool = True
) -> _Stats:
    """Noise correlation and level from the flattest blocks of ``data`` (planes ``(C, H, W)``)."""
    blocks = [_blocks(p, rng) for p in data]
    lo = min(float(p.min()) for p in data)
    hi = max(float(p.max()) for p in data)
    kept = []
    for bl in blocks:
        if not len(bl):
            continue
        clipped = (np.mean(bl <= lo, axis=(1, 2)) > 0.02) | (np.mean(bl >= hi, axis=(1, 2)) > 0.02)
        kept.append(bl[~clipped] if flat_only else bl)
    bl = np.concatenate(kept) if kept else np.empty((0, BLOCK, BLOCK))
    res = _detrend(bl) if len(bl) else bl
    power = np.mean(res * res, axis=(1, 2)) if len(res) else np.empty(0)
    if flat_only and len(res):
        sel = _flattest(bl.mean(axis=(1, 2)), power)
        res, power = res[sel], power[sel]
    res, power = res[power > 0], power[power > 0]
    if len(res) < 4:
        nan = (math.nan, math.nan)
        return _Stats({"Y": nan, "X": nan}, math.nan, 0)
    corr = {}
    for axis in AXES:
        lag1, lag2 = _lag_ratios(res, axis)
        corr[axis] = _unbias(float(np.median(lag1)), float(np.median(lag2)))
    # expected detrended power of unit white noise; the flattest blocks' median is
    # a low quantile of its spread, which `_selection_bias` undoes for white noise
    dof = _debias_terms(BLOCK)[0, 0] * (_selection_bias() if flat_only else 1.0)
    noise_std = float(np.sqrt(np.median(power) / dof))
    return _Stats(corr, noise_std, len(res))


def _selection_bias() -> float:
    """Median power of the flattest `FLAT_FRACTION` of white-noise blocks over
    the mean: the ``FLAT_FRACTION / 2`` quantile of a chi-square with the
    detrended blocks' degrees of freedom, over those degrees."""
    from scipy.stats import chi2

    k = BLOCK * BLOCK - 6
    return float(chi2.ppf(FLAT_FRACTION / 2, k) / k)


def _flattest(means: np.ndarray, power: np.ndarray, bins: int = 4) -> np.ndarray:
    """Indices of the `FLAT_FRACTION` least varying blocks in each brightness quarter."""
    edges = np.quantile(means, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, means, side="right") - 1, 0, bins - 1)
    picked = []
    for b in range(bins):
        idx = np.flatnonzero(which == b)
        if len(idx):
            keep = max(2, int(len(idx) * FLAT_FRACTION))
            picked.append(idx[np.argsort(power[idx])[:keep]])
    return np.concatenate(picked) if picked else np.empty(0, int)


# ------------------------------------------------------------------ residual
def _residual_checks(
    noisy: list[np.ndarray],
    denoised: list[np.ndarray],
    stats: _Stats,
    rng: np.random.Generator,
) -> dict[str, Any]:
    raw = denoised
    if not all(np.isfinite(d).all() for d in denoised):  # counted by out_of_range; the rest skip them
        denoised = [np.where(np.isfinite(d), d, n) for d, n in zip(denoised, noisy)]
    residuals = [n - d for n, d in zip(noisy, denoised)]
    r = np.concatenate([x.reshape(-1) for x in residuals]).astype(np.float64)
    sigma = stats.noise_std if stats.blocks and stats.noise_std > 0 else float(np.std(r)) or 1.0
    mean = float(np.mean(r)) / sigma
    ratio = float(np.std(r)) / sigma
    rcorr = _block_stats(residuals, rng, flat_only=False).corr
    structure = float(np.mean([_structure_share(*_centre((x, d))) for x, d in zip(residuals, denoised)]))
    out_of_range = _out_of_range(noisy, raw, sigma)
    warnings = []
    if out_of_range >= OUT_OF_RANGE_WARNING:
        warnings.append(
            f"After denoising, {out_of_range:.2%} of the result lies outside the noisy image's "
            "range (by more than the noise level), which removing noise cannot do: the network "
            "failed in places, often as bands or stripes over fine texture: train the model again "
            "with a shorter time budget (fewer steps)."
        )
    if structure >= STRUCTURE_WARNING:
        warnings.append(
            f"After denoising, the residual (noisy - denoised) holds image structure "
            f"({structure:.2f} of the detail in the result; a 2-pixel blur gives about 0.05): "
            "detail was removed along with the noise "
            "(over-smoothing). Look at the Residual layer: edges or spots in it are lost detail. "
            "Train longer, or try the 'weighted' output."
        )
    if ratio < 0.7:
        warnings.append(
            f"After denoising, the residual is only {ratio:.2f} of the noise level: much of the "
            "noise is still in the result. Train longer (a larger time budget, or Continue)."
        )
    elif ratio > 1.5:
        warnings.append(
            f"After denoising, the residual is {ratio:.2f} times the noise level: more than the "
            "noise was removed. Look at the Residual layer for lost detail."
        )
    if abs(mean) > 0.2:
        warnings.append(
            f"After denoising, the result is on average {abs(mean):.2f} noise levels "
            f"{'darker' if mean > 0 else 'brighter'} than the input; intensities are not "
            "preserved (clipped or saturated input can do this). Compare intensities with care."
        )
    return {
        "residual_mean": mean,
        "residual_std_ratio": ratio,
        "residual_autocorrelation": rcorr,
        "residual_structure": structure,
        "out_of_range": out_of_range,
        "warnings": warnings,
    }


def _out_of_range(noisy: list[np.ndarray], denoised: list[np.ndarray], sigma: float) -> float:
    """Share of denoised pixels beyond their channel's [min, max] over the noisy
    ``(C, H, W)`` planes, widened by ``sigma``; NaN and inf count as beyond."""
    lo = np.min([np.nanmin(n, axis=(1, 2)) for n in noisy], axis=0)[:, None, None] - sigma
    hi = np.max([np.nanmax(n, axis=(1, 2)) for n in noisy], axis=0)[:, None, None] + sigma
    inside = sum(int(np.count_nonzero((d >= lo) & (d <= hi))) for d in denoised)
    total = sum(d.size for d in denoised)
    return (total - inside) / total


def _centre(planes: tuple[np.ndarray, ...], size: int = 512) -> tuple[np.ndarray, ...]:
    """The central ``size`` x ``size`` crop of each ``(C, H, W)`` plane."""
    h, w = planes[0].shape[1:]
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return tuple(p[:, y0 : y0 + size, x0 : x0 + size] for p in planes)


def _structure_share(residual: np.ndarray, denoised: np.ndarray) -> float:
    """How much of the image's detail the residual holds, per channel (mean).

    The residual is smoothed (Gaussian, 2 px), which averages its noise away,
    and regressed on the denoised image's blob and edge responses (negative
    Laplacian of Gaussian at 3, 4.5 and 6 px): blurring removes about the
    negative Laplacian, so what the regression explains is detail that the
    denoiser removed. Its energy is compared with the energy of the denoised
    image's own detail in the same band (Gaussian 2 px minus Gaussian 8 px),
    which makes the figure independent of the noise level. Measured: the
    clean image as "denoised" 0.000, BM3D 0.001-0.015, napari-b2u 0.003-0.026,
    the clean image blurred by 2 px 0.05-0.09 and by 3 px 0.24-0.36 (camera
    with sigma 25, the noisy cells sample).
    """
    from scipy import ndimage as ndi

    shares = []
    for r, d in zip(residual.astype(np.float64), denoised.astype(np.float64)):
        smooth = ndi.gaussian_filter(r, 2.0)
        feats = np.stack([-ndi.gaussian_laplace(d, s).ravel() for s in (3.0, 4.5, 6.0)], axis=1)
        feats -= feats.mean(axis=0)
        y = smooth.ravel() - smooth.mean()
        detail = ndi.gaussian_filter(d, 2.0) - ndi.gaussian_filter(d, 8.0)
        if float(np.dot(y, y)) <= 0 or detail.var() <= 0:
            continue
        coef, *_ = np.linalg.lstsq(feats, y, rcond=None)
        fit = feats @ coef
        shares.append(min(1.0, float(np.dot(fit, fit)) / fit.size / detail.var()))
    return float(np.mean(shares)) if shares else 0.0


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value
