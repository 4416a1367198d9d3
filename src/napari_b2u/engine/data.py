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
from collections.abc import Callable
from typing import Any

import numpy as np

CHANNEL_AXES = "CS"
#: The letter of stack axes that have no name (guessed axes, stacked files).
UNNAMED = "N"
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
        return UNNAMED * (ndim - 2) + "YX"
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
    """A view of an array as ``n`` samples of shape ``(channels, height, width)``
    (planes), or with ``spatial_dims=3`` ``(channels, depth, height, width)``
    (volumes: Z is then a spatial axis, not a stack axis).

    Parameters
    ----------
    array : array-like
        numpy, memmap, dask or zarr array.
    axes : str, optional
        One letter per dimension (see `resolve_axes`).
    spatial_dims : int
        2 (planes) or 3 (volumes; ``axes`` must contain Z).
    """

    def __init__(self, array: Any, axes: str | None = None, spatial_dims: int = 2) -> None:
        if not hasattr(array, "shape") or not hasattr(array, "__getitem__"):
            array = np.asarray(array)
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.axes = resolve_axes(self.shape, axes)
        dtype = np.dtype(getattr(array, "dtype", np.float32))
        if dtype.kind not in "biuf":
            raise TypeError(f"Cannot denoise data of dtype {dtype}; expected numbers.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if spatial_dims == 3 and "Z" not in self.axes:
            raise ValueError(
                f"Volumes (spatial_dims=3) need a Z axis, but the axes are {self.axes!r}. Name "
                "the z-stack's axis Z (e.g. 'ZYX' or 'TZYX'), or use spatial_dims=2 (planes)."
            )
        self.dtype = dtype
        self.spatial = "ZYX" if spatial_dims == 3 else "YX"
        self.spatial_dims = spatial_dims
        kept_letters = self.spatial + CHANNEL_AXES
        self.stack_dims = [i for i, a in enumerate(self.axes) if a not in kept_letters]
        self.stack_shape = tuple(self.shape[i] for i in self.stack_dims)
        self.n = math.prod(self.stack_shape)
        self.spatial_shape = tuple(self.shape[self.axes.index(a)] for a in self.spatial)
        self.height, self.width = self.spatial_shape[-2:]
        self.depth = self.spatial_shape[0] if spatial_dims == 3 else 1
        c_dims = [i for i, a in enumerate(self.axes) if a in CHANNEL_AXES]
        self.channel_dim = c_dims[0] if c_dims else None
        self.channels = self.shape[self.channel_dim] if c_dims else 1
        kept = [a for a in self.axes if a in kept_letters]  # order after indexing
        if self.channel_dim is None:
            kept.insert(0, "C")
        order = ("C", *self.spatial)
        self._to_cyx = tuple(kept.index(a) for a in order) if c_dims else None
        if self._to_cyx == tuple(range(len(order))):
            self._to_cyx = "C first"
        self.kept_axes = "".join(a for a in self.axes if a in kept_letters)
        self._lazy = not isinstance(array, np.ndarray)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        if self.n == 0 or 0 in self.spatial_shape or self.channels == 0:
            raise ValueError(f"The image is empty (shape {self.shape}); nothing to denoise.")

    def sample_shape(self, i: int) -> tuple[int, ...]:
        """Spatial shape of sample ``i``: the same for every sample of one array."""
        return self.spatial_shape

    def pick(self, rng: np.random.Generator) -> int:
        """A random sample, each equally likely (they are all the same size)."""
        return int(rng.integers(self.n))

    @property
    def channel_letter(self) -> str:
        return self.axes[self.channel_dim] if self.channel_dim is not None else ""

    def index(self, i: int, *crop: slice) -> tuple:
        """Index tuple, in the array's own axis order, of sample ``i``, cropped by
        one slice per spatial axis (``ys, xs``, or ``zs, ys, xs`` for volumes)."""
        where = np.unravel_index(i, self.stack_shape) if self.stack_shape else ()
        idx: list[Any] = [slice(None)] * len(self.shape)
        for dim, j in zip(self.stack_dims, where):
            idx[dim] = int(j)
        for axis, cut in zip(self.spatial[len(self.spatial) - len(crop) :], crop):
            idx[self.axes.index(axis)] = cut
        return tuple(idx)

    def to_cyx(self, block: np.ndarray) -> np.ndarray:
        """Reorder a block read with `index` to ``(C, [d,] h, w)``."""
        if self._to_cyx is None:
            return block[None]
        if self._to_cyx == "C first":
            return block
        return np.transpose(block, self._to_cyx)

    def from_cyx(self, block: np.ndarray) -> np.ndarray:
        """Inverse of `to_cyx`: ``(C, [d,] h, w)`` back to the array's order."""
        if self._to_cyx is None:
            return block[0]
        if self._to_cyx == "C first":
            return block
        return np.transpose(block, np.argsort(self._to_cyx))

    def read(self, i: int, *crop: slice) -> np.ndarray:
        """Sample ``i`` (or a crop of it, one slice per spatial axis) as float32
        ``(C, [d,] h, w)``."""
        if self._lazy:
            return self.plane(i)[(slice(None), *_full(crop, self.spatial_dims))]
        return self.to_cyx(np.asarray(self.array[self.index(i, *crop)], dtype=np.float32))

    def plane(self, i: int, cache: bool = True) -> np.ndarray:
        """Whole sample ``i`` as float32 ``(C, [D,] H, W)``; lazy arrays' samples
        are cached (training revisits them) unless ``cache`` is false."""
        if not self._lazy:
            return self.read(i)

        def load() -> np.ndarray:
            block = np.asarray(self.array[self.index(i)], dtype=np.float32)
            return np.ascontiguousarray(self.to_cyx(block))

        if not cache:
            return load()
        return _cached(self._cache, i, load)


def _cached(cache: OrderedDict[int, np.ndarray], i: int, load: Callable[[], np.ndarray]) -> np.ndarray:
    """``cache[i]``, loaded first if missing; the least recently used entries
    leave once the cache holds more than `PLANE_CACHE_BYTES` (the newest stays)."""
    if i in cache:
        cache.move_to_end(i)
        return cache[i]
    cache[i] = plane = load()
    while len(cache) > 1 and sum(p.nbytes for p in cache.values()) > PLANE_CACHE_BYTES:
        cache.popitem(last=False)
    return plane


class PlaneSet:
    """Several arrays' samples as one sequence, for training one model on
    images of different sizes (files of a data set). The parts must share
    their channels and ``spatial_dims``; their sample sizes may differ.

    It offers what training reads of a `Planes`: ``n``, ``channels``,
    ``spatial_dims``, ``read``, ``plane``, ``sample_shape`` and ``pick``
    (which weights each sample by its pixel count, so every pixel counts
    alike, as in one stack). ``height``, ``width``, ``depth`` and
    ``spatial_shape`` are the smallest over the parts: what patch sizes and
    size checks must fit.
    """

    def __init__(self, parts: list[Planes]) -> None:
        if not parts:
            raise ValueError("No images to train on.")
        first = parts[0]
        channels = {p.channels for p in parts}
        dims = {p.spatial_dims for p in parts}
        if len(channels) > 1 or len(dims) > 1:
            raise ValueError(
                f"The inputs have different channels {sorted(channels)} or spatial dims "
                f"{sorted(dims)}; one model needs inputs with the same channels. Train a model per kind."
            )
        self.parts = parts
        self.channels, self.spatial_dims = first.channels, first.spatial_dims
        self.spatial = first.spatial
        self.dtype = np.result_type(*(p.dtype for p in parts))
        channel = "".join(a for a in first.kept_axes if a in CHANNEL_AXES)
        self.axes = UNNAMED + channel + first.spatial
        self.shapes = [p.shape for p in parts]
        self.n = sum(p.n for p in parts)
        self._starts = np.cumsum([0] + [p.n for p in parts])
        self.spatial_shape = tuple(min(s) for s in zip(*(p.spatial_shape for p in parts)))
        self.height, self.width = self.spatial_shape[-2:]
        self.depth = self.spatial_shape[0] if self.spatial_dims == 3 else 1
        sizes = np.repeat([math.prod(p.spatial_shape) for p in parts], [p.n for p in parts])
        self._cdf = np.cumsum(sizes / sizes.sum())
        self._cdf /= self._cdf[-1]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()  # one budget for all parts

    def _locate(self, i: int) -> tuple[Planes, int]:
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.parts[k], i - int(self._starts[k])

    def read(self, i: int, *crop: slice) -> np.ndarray:
        part, j = self._locate(i)
        if part._lazy:
            return self.plane(i)[(slice(None), *_full(crop, self.spatial_dims))]
        return part.read(j, *crop)

    def plane(self, i: int, cache: bool = True) -> np.ndarray:
        part, j = self._locate(i)
        if not part._lazy or not cache:
            return part.plane(j, cache=False)
        return _cached(self._cache, i, lambda: part.plane(j, cache=False))

    def sample_shape(self, i: int) -> tuple[int, ...]:
        part, _ = self._locate(i)
        return part.spatial_shape

    def pick(self, rng: np.random.Generator) -> int:
        # what rng.choice(n, p=weights) draws, without re-checking the weights per patch
        return int(self._cdf.searchsorted(rng.random(), side="right"))

    def as_2d(self) -> PlaneSet:
        """The same data seen as 2D planes (volumes cut into their Z slices)."""
        return PlaneSet([Planes(p.array, p.axes) for p in self.parts])


def as_planes(image: Any, axes: str | None = None, spatial_dims: int = 2) -> Planes | PlaneSet:
    """``image`` as `Planes`; a `PlaneSet` is passed through as it is (it
    carries its own axes, which must then be ``None`` or its ``axes``)."""
    if isinstance(image, PlaneSet):
        if axes is not None and axes.upper() != image.axes:
            raise ValueError(
                f"These images carry their own axes {image.axes!r}; pass axes=None, not {axes!r}."
            )
        if spatial_dims != image.spatial_dims:
            raise ValueError(
                f"The images are {'volumes' if image.spatial_dims == 3 else 'planes'}, "
                f"but spatial_dims={spatial_dims} was asked for."
            )
        return image
    return Planes(image, axes, spatial_dims)


def _full(crop: tuple[slice, ...], dims: int) -> tuple[slice, ...]:
    """``crop`` of the last spatial axes, padded with full slices in front."""
    return (slice(None),) * (dims - len(crop)) + tuple(crop)


def estimate_normalization(
    planes: Planes | PlaneSet, max_pixels: int = 2**21
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std from a strided sample of up to 16 planes,
    after clipping the sample to its 0.2-99.8 percentiles.

    Raises ``ValueError`` when the sample holds NaN or inf values.
    """
    picks = np.unique(np.linspace(0, planes.n - 1, min(planes.n, 16)).round().astype(int))
    per_plane = max(1, max_pixels // len(picks))

    def strided(i: int) -> np.ndarray:
        size = math.prod(planes.sample_shape(i))
        every = slice(None, None, max(1, int((size / per_plane) ** (1 / planes.spatial_dims))))
        return planes.read(i, *([every] * planes.spatial_dims)).reshape(planes.channels, -1)

    sample = np.concatenate([strided(int(i)) for i in picks], axis=1).astype(np.float64)
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


def normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray, dims: int = 2) -> np.ndarray:
    """``(x - mean) / std`` per channel, for ``(..., C, H, W)`` blocks (``dims=3``:
    ``(..., C, D, H, W)``); a new array."""
    shape = (-1,) + (1,) * dims
    return (x - mean.reshape(shape)) / std.reshape(shape)


def denormalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray, dims: int = 2) -> np.ndarray:
    """Inverse of `normalize`, in place where ``x`` allows it; returns ``x``."""
    shape = (-1,) + (1,) * dims
    x *= std.reshape(shape)
    x += mean.reshape(shape)
    return x


def patch_shape(
    planes: Planes | PlaneSet,
    patch_size: int,
    multiple: int | tuple[int, ...],
    subsample: tuple[int, int] = (1, 1),
    patch_depth: int | None = None,
) -> tuple[int, ...]:
    """Training patch size: ``patch_size`` (and, for volumes, ``patch_depth``)
    capped by the (sub-sampled) sample, rounded down to a multiple of the
    UNet's grid (``multiple`` per axis, or one for all) where it allows."""
    sizes = [planes.height // subsample[0], planes.width // subsample[1]]
    wanted = [patch_size, patch_size]
    if planes.spatial_dims == 3:
        sizes.insert(0, planes.depth)
        wanted.insert(0, patch_depth or patch_size)
    multiples = multiple if isinstance(multiple, tuple) else (multiple,) * len(sizes)

    def side(want: int, n: int, m: int) -> int:
        p = min(want, n)
        return p - p % m if p >= m else p

    return tuple(side(w, n, m) for w, n, m in zip(wanted, sizes, multiples))


class PatchSampler:
    """Random normalised training patches ``(B, C, ph, pw)`` with optional
    flips and 90-degree rotations.

    With ``subsample`` ``(sy, sx)``, a patch is every ``sy``-th row and
    ``sx``-th column of a ``(sy * ph, sx * pw)`` window, from a random phase:
    the pixel-shuffle sub-images that decorrelated training sees. Rotations
    are left out when ``sy != sx`` (they would swap the sub-sampled axis).
    For volumes, patches are ``(B, C, pd, ph, pw)``; flips include Z and
    rotations stay in the Y-X plane.
    """

    def __init__(
        self,
        planes: Planes | PlaneSet,
        shape: tuple[int, int],
        mean: np.ndarray,
        std: np.ndarray,
        augment: bool,
        rng: np.random.Generator,
        subsample: tuple[int, int] = (1, 1),
    ) -> None:
        self.planes, self.shape, self.augment, self.rng = planes, shape, augment, rng
        self.subsample = subsample
        self.mean, self.std = mean, std

    def batch(self, size: int) -> np.ndarray:
        *pz, ph, pw = self.shape
        sy, sx = self.subsample
        planes = self.planes
        out = np.empty((size, planes.channels, *self.shape), dtype=np.float32)
        for b in range(size):
            i = planes.pick(self.rng)
            *depth, height, width = planes.sample_shape(i)
            y0 = int(self.rng.integers(height - ph * sy + 1))
            x0 = int(self.rng.integers(width - pw * sx + 1))
            crop = [slice(y0, y0 + ph * sy), slice(x0, x0 + pw * sx)]
            if pz:
                z0 = int(self.rng.integers(depth[0] - pz[0] + 1))
                crop.insert(0, slice(z0, z0 + pz[0]))
            patch = planes.read(i, *crop)
            if sy > 1 or sx > 1:
                py, px = int(self.rng.integers(sy)), int(self.rng.integers(sx))
                patch = patch[..., py::sy, px::sx]
            if self.augment:
                patch = self._augment(patch)
            out[b] = patch
        return normalize(out, self.mean, self.std, planes.spatial_dims).astype(
            np.float32, copy=False
        )

    def _augment(self, patch: np.ndarray) -> np.ndarray:
        flips = self.rng.integers(2, size=2)
        if flips[0]:
            patch = patch[..., ::-1, :]
        if flips[1]:
            patch = patch[..., ::-1]
        if patch.ndim == 4 and self.rng.integers(2):  # volumes: flip Z too
            patch = patch[:, ::-1]
        if patch.shape[-1] == patch.shape[-2] and self.subsample[0] == self.subsample[1]:
            patch = np.rot90(patch, int(self.rng.integers(4)), axes=(-2, -1))
        return patch
