"""Reading 2D planes and random patches from an array as it is.

An input is any array with ``shape``, ``ndim`` and numpy-style indexing
(numpy, memmap, dask, zarr). Its axes name Y and X, optionally one channel
axis (C, or S for RGB samples) and any number of stack axes (T, Z, ...);
each plane of the stack is one 2D sample. Nothing here converts a whole
stack to float32: planes and patches are read one at a time.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

CHANNEL_AXES = "CS"
#: Cache of whole planes for lazy arrays (dask, zarr), whose patch reads are slow.
PLANE_CACHE_BYTES = 512 * 2**20


def resolve_axes(shape: tuple[int, ...], axes: str | None) -> str:
    """Check ``axes`` against ``shape``, or guess it when ``None``.

    ``None`` means ``"YX"`` for 2D and "stack of YX planes" otherwise (each
    leading axis is a stack axis, named ``"N"``): pass ``"YXC"`` for RGB.
    """
    ndim = len(shape)
    if axes is None:
        if ndim < 2:
            raise ValueError(f"Need at least a 2D image, got shape {tuple(shape)}.")
        return "N" * (ndim - 2) + "YX"
    axes = axes.upper()
    problems = []
    if len(axes) != ndim:
        problems.append(f"axes {axes!r} has {len(axes)} letters for an array of {ndim} dimensions")
    if axes.count("Y") != 1 or axes.count("X") != 1:
        problems.append("axes must contain Y and X exactly once")
    if sum(axes.count(c) for c in CHANNEL_AXES) > 1:
        problems.append("axes may contain at most one channel axis (C or S)")
    stack = [a for a in axes if a not in "YX" + CHANNEL_AXES]
    if len(set(stack)) != len(stack):
        problems.append("stack axes must not repeat")
    if problems:
        raise ValueError(
            f"Invalid axes {axes!r} for shape {tuple(shape)}: "
            + "; ".join(problems)
            + ". Name one letter per dimension, e.g. 'YX', 'TYX', 'ZYX', 'YXC' or 'TCYX'."
        )
    return axes


class Planes:
    """A view of an array as ``n`` planes of shape ``(channels, height, width)``.

    Parameters
    ----------
    array : array-like
        numpy, memmap, dask or zarr array.
    axes : str, optional
        One letter per dimension (see `resolve_axes`).
    """

    def __init__(self, array: Any, axes: str | None = None) -> None:
        if not hasattr(array, "shape") or not hasattr(array, "__getitem__"):
            array = np.asarray(array)
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.axes = resolve_axes(self.shape, axes)
        dtype = np.dtype(getattr(array, "dtype", np.float32))
        if dtype.kind not in "biuf":
            raise TypeError(f"Cannot denoise data of dtype {dtype}; expected numbers.")
        self.dtype = dtype
        self.stack_dims = [i for i, a in enumerate(self.axes) if a not in "YX" + CHANNEL_AXES]
        self.stack_shape = tuple(self.shape[i] for i in self.stack_dims)
        self.n = math.prod(self.stack_shape)
        self.height = self.shape[self.axes.index("Y")]
        self.width = self.shape[self.axes.index("X")]
        c_dims = [i for i, a in enumerate(self.axes) if a in CHANNEL_AXES]
        self.channel_dim = c_dims[0] if c_dims else None
        self.channels = self.shape[self.channel_dim] if c_dims else 1
        kept = [a for a in self.axes if a in "YX" + CHANNEL_AXES]  # order after indexing
        if self.channel_dim is None:
            kept.insert(0, "C")
        self._to_cyx = tuple(kept.index(a) for a in ("C", "Y", "X")) if c_dims else None
        self._kept = kept
        self._lazy = not isinstance(array, np.ndarray)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        if self.n == 0 or self.height == 0 or self.width == 0 or self.channels == 0:
            raise ValueError(f"The image is empty (shape {self.shape}); nothing to denoise.")

    @property
    def channel_letter(self) -> str:
        return self.axes[self.channel_dim] if self.channel_dim is not None else ""

    def index(self, i: int, ys: slice = slice(None), xs: slice = slice(None)) -> tuple:
        """Index tuple, in the array's own axis order, of plane ``i`` (cropped)."""
        where = np.unravel_index(i, self.stack_shape) if self.stack_shape else ()
        idx: list[Any] = [slice(None)] * len(self.shape)
        for dim, j in zip(self.stack_dims, where):
            idx[dim] = int(j)
        idx[self.axes.index("Y")] = ys
        idx[self.axes.index("X")] = xs
        return tuple(idx)

    def to_cyx(self, block: np.ndarray) -> np.ndarray:
        """Reorder a block read with `index` to ``(C, h, w)``."""
        if self._to_cyx is None:
            return block[None]
        return np.transpose(block, self._to_cyx)

    def from_cyx(self, block: np.ndarray) -> np.ndarray:
        """Inverse of `to_cyx`: ``(C, h, w)`` back to the array's order."""
        if self._to_cyx is None:
            return block[0]
        return np.transpose(block, np.argsort(self._to_cyx))

    def read(self, i: int, ys: slice = slice(None), xs: slice = slice(None)) -> np.ndarray:
        """Plane ``i`` (or a crop of it) as float32 ``(C, h, w)``."""
        if self._lazy:
            return self.plane(i)[:, ys, xs]
        return self.to_cyx(np.asarray(self.array[self.index(i, ys, xs)], dtype=np.float32))

    def plane(self, i: int, cache: bool = True) -> np.ndarray:
        """Whole plane ``i`` as float32 ``(C, H, W)``; lazy arrays' planes are
        cached (training revisits them) unless ``cache`` is false."""
        if not self._lazy:
            return self.read(i)
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        block = np.asarray(self.array[self.index(i)], dtype=np.float32)
        plane = np.ascontiguousarray(self.to_cyx(block))
        if not cache:
            return plane
        self._cache[i] = plane
        while (
            len(self._cache) > 1 and sum(p.nbytes for p in self._cache.values()) > PLANE_CACHE_BYTES
        ):
            self._cache.popitem(last=False)
        return plane


def estimate_normalization(
    planes: Planes, max_pixels: int = 2**21
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std from a strided sample of up to 16 planes,
    after clipping the sample to its 0.2-99.8 percentiles.

    Raises ``ValueError`` when the sample holds NaN or inf values.
    """
    picks = np.unique(np.linspace(0, planes.n - 1, min(planes.n, 16)).round().astype(int))
    per_plane = max(1, max_pixels // len(picks))
    stride = max(1, int(math.sqrt(planes.height * planes.width / per_plane)))
    sample = np.concatenate(
        [
            planes.read(int(i), slice(None, None, stride), slice(None, None, stride)).reshape(
                planes.channels, -1
            )
            for i in picks
        ],
        axis=1,
    ).astype(np.float64)
    if not np.isfinite(sample).all():
        raise ValueError(
            "The image contains NaN or infinite values. Replace them first, "
            "e.g. with numpy.nan_to_num(image), then train again."
        )
    # Clip the extreme 0.2 % first: a few hot pixels must not set the scale.
    lo, hi = np.percentile(sample, [0.2, 99.8], axis=1, keepdims=True)
    sample = np.clip(sample, lo, hi)
    mean = sample.mean(axis=1)
    std = sample.std(axis=1)
    # A constant channel has nothing to learn but must not divide by zero.
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def patch_shape(planes: Planes, patch_size: int, multiple: int) -> tuple[int, int]:
    """Training patch size: ``patch_size`` capped by the plane, rounded down
    to a multiple of ``multiple`` (the UNet's) where the plane allows it."""

    def side(n: int) -> int:
        p = min(patch_size, n)
        return p - p % multiple if p >= multiple else p

    return side(planes.height), side(planes.width)


class PatchSampler:
    """Random normalised training patches ``(B, C, ph, pw)`` with optional
    flips and 90-degree rotations."""

    def __init__(
        self,
        planes: Planes,
        shape: tuple[int, int],
        mean: np.ndarray,
        std: np.ndarray,
        augment: bool,
        rng: np.random.Generator,
    ) -> None:
        self.planes, self.shape, self.augment, self.rng = planes, shape, augment, rng
        self.mean = mean.reshape(-1, 1, 1)
        self.inv_std = (1.0 / std).reshape(-1, 1, 1)

    def batch(self, size: int) -> np.ndarray:
        ph, pw = self.shape
        out = np.empty((size, self.planes.channels, ph, pw), dtype=np.float32)
        for b in range(size):
            i = int(self.rng.integers(self.planes.n))
            y0 = int(self.rng.integers(self.planes.height - ph + 1))
            x0 = int(self.rng.integers(self.planes.width - pw + 1))
            patch = self.planes.read(i, slice(y0, y0 + ph), slice(x0, x0 + pw))
            if self.augment:
                patch = self._augment(patch)
            out[b] = patch
        out -= self.mean
        out *= self.inv_std
        return out

    def _augment(self, patch: np.ndarray) -> np.ndarray:
        flips = self.rng.integers(2, size=2)
        if flips[0]:
            patch = patch[:, ::-1]
        if flips[1]:
            patch = patch[:, :, ::-1]
        if patch.shape[1] == patch.shape[2]:
            patch = np.rot90(patch, int(self.rng.integers(4)), axes=(1, 2))
        return patch
