"""Inference: the three output modes, tiling with smooth blending, stacks
plane by plane. Memory is bounded by the tile size, not the image size."""

from __future__ import annotations

import contextlib
import functools
import itertools
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch

from napari_b2u.config import (
    MODES,
    TILE_DEPTH,
    TILE_DEPTH_OVERLAP,
    TILE_OVERLAP,
    TILE_OVERLAP_3D,
    TILE_SIZE,
    TILE_SIZE_3D,
)
from napari_b2u.core import global_mapper, global_masker
from napari_b2u.core.masking import copies
from napari_b2u.core.unet import UNet, pad_mode, pad_reflect
from napari_b2u.engine._malloc import INFERENCE_MMAP_ABOVE, keep_memory
from napari_b2u.engine.data import denormalize, normalize
from napari_b2u.engine.device import memory_format
from napari_b2u.engine.precision import Precision


@torch.inference_mode()
def predict(
    net: UNet,
    y: torch.Tensor,
    mode: str,
    cell: int,
    lam: float,
    precision: Precision | None = None,
    planar: bool = False,
    padding: str | None = None,
) -> torch.Tensor:
    """Network output for normalised images ``y`` ``(N, C, H, W)`` (or volumes
    ``(N, C, D, H, W)``; ``planar``: the in-plane masker), float32.

    ``visible = f(y)``, ``blind = h(f(Omega_y))`` and
    ``weighted = (blind + lam * visible) / (lam + 1)``. The network passes run
    in ``precision`` (default fp32); the mapper's sum and the weighting in fp32.
    ``y`` off the network's pooling grid is padded after the masker, so the
    masker never sees padding as data: by `pad_mode`, or replicated where
    ``padding="replicate"`` (tiles follow the rule of their whole plane).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    precision = precision or Precision("fp32", y.device.type)
    dtype = next(net.parameters()).dtype
    converted = dtype != torch.float32  # by Precision.for_inference: it runs without autocast
    layout = memory_format(net)

    pads = [-s % m for s, m in zip(y.shape[2:], net.multiples)]
    crop = (..., *(slice(0, s) for s in y.shape[2:]))

    def run(x: torch.Tensor) -> torch.Tensor:
        if padding is not None and any(pads):
            x = pad_reflect(x, *pads, mode=padding)
        # the input in the weights' layout too: fp32 with a plain-layout input ran 1.2-3x slower
        return net(x.to(dtype, memory_format=layout)).float()[crop]

    context = contextlib.nullcontext() if converted else precision.autocast()
    with context:
        if mode == "visible":
            return run(y)
        volume, masks = global_masker(y, cell, planar=planar)
        # On the CPU one masked copy at a time: a copy's activations are 1/K of the
        # K copies' and stay under INFERENCE_MMAP_ABOVE, so they are reused (4096²
        # `weighted`: 26.9 -> 19.5 s, peak 816 -> 530 MB). Elsewhere one image's K
        # copies at a time (not N*K).
        chunk = 1 if y.device.type == "cpu" else copies(y, cell, planar)
        out = torch.cat([run(part) for part in volume.split(chunk)])
        visible = run(y) if mode == "weighted" else None
    blind = global_mapper(out, masks.float(), cell, planar=planar)
    if mode == "blind":
        return blind
    return (blind + lam * visible) / (lam + 1.0)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at
    least ``overlap`` shared pixels; the last tile ends at ``size``."""
    if size <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _ramp(length: int, start: int, size: int, overlap: int) -> np.ndarray:
    """1D blending weight of a tile. Where a neighbour overlaps, the weight is
    0 over the outer quarter of the overlap (pixels with the least context),
    then rises linearly to 1 over its middle half."""
    w = np.ones(length, dtype=np.float32)
    n = min(overlap, length // 2)
    if n > 0:
        rise = max(n // 2, 1)
        ramp = np.clip((np.arange(n, dtype=np.float32) - n // 4 + 0.5) / rise, 0.0, 1.0)
        if start > 0:
            w[:n] = ramp
        if start + length < size:
            w[length - n :] = ramp[::-1]
    return w


def denoise_plane(
    net: UNet,
    plane: np.ndarray,
    *,
    mode: str,
    cell: int,
    lam: float,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    tile_depth: int | None = None,
    device: torch.device,
    precision: Precision | None = None,
    planar: bool = False,
) -> np.ndarray:
    """Denoise one normalised plane ``(C, H, W)`` or volume ``(C, D, H, W)``,
    tile by tile (see `denoise_tiled`). When the device runs out of memory,
    the tiles are halved and the plane tried again, with a warning."""
    tile, overlap = tile_shape(net, tile_size, tile_overlap, tile_depth)
    smallest = tuple(max(2 * cell, m, 32) if axis else max(m, 4) for axis, m in _axes(net))
    while True:
        try:
            return denoise_tiled(
                net,
                plane,
                mode=mode,
                cell=cell,
                lam=lam,
                tile=tile,
                overlap=tuple(min(o, t // 2) for o, t in zip(overlap, tile)),
                device=device,
                precision=precision,
                planar=planar,
            )
        except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
            current = tuple(min(t, s) for t, s in zip(tile, plane.shape[1:]))
            if "out of memory" not in str(exc).lower() or all(
                c <= lo for c, lo in zip(current, smallest)
            ):
                raise
            tile = tuple(
                max(c // 2 // m * m, lo) for c, m, lo in zip(current, net.multiples, smallest)
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
            warnings.warn(
                f"Out of memory on {device} with {_px(current)} tiles; retrying with "
                f"{_px(tile)} tiles.",
                RuntimeWarning,
                stacklevel=2,
            )


def _axes(net: UNet) -> list[tuple[bool, int]]:
    """``(is Y or X, multiple)`` per spatial axis of ``net``."""
    return [(i >= net.dims - 2, m) for i, m in enumerate(net.multiples)]


def _px(tile: tuple[int, ...]) -> str:
    return f"{tile[-1]} px" if len(tile) == 2 else " x ".join(map(str, tile))


def check_tile_depth(tile_depth: int | None, dims: int, whose: str = "this model denoises") -> None:
    """Refuse a ``tile_depth`` for models of planes (``dims`` 2): only volumes have Z tiles."""
    if tile_depth is not None and dims != 3:
        raise ValueError(
            f"tile_depth sets the Z tiles of volumes, but {whose} planes (2D). Leave it "
            "unset, or train volume models (spatial_dims=3)."
        )


def tile_shape(
    net: UNet, tile_size: int | None, tile_overlap: int | None, tile_depth: int | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Tile and overlap per spatial axis: ``tile_size`` / ``tile_overlap`` in Y
    and X (defaults 512 / 64 for planes, 256 / 64 for volumes) and, for
    volumes, ``tile_depth`` slices in Z (default `TILE_DEPTH`) overlapping by
    `TILE_DEPTH_OVERLAP`; `denoise_plane` caps each overlap at half its tile."""
    check_tile_depth(tile_depth, net.dims)
    if net.dims == 2:
        tile = int(tile_size or TILE_SIZE)
        overlap = TILE_OVERLAP if tile_overlap is None else int(tile_overlap)
        return (tile, tile), (overlap, overlap)
    tile = int(tile_size or TILE_SIZE_3D)
    overlap = TILE_OVERLAP_3D if tile_overlap is None else int(tile_overlap)
    depth = int(tile_depth or TILE_DEPTH)
    return (depth, tile, tile), (TILE_DEPTH_OVERLAP, overlap, overlap)


def denoise_tiled(
    net: UNet,
    plane: np.ndarray,
    *,
    mode: str,
    cell: int,
    lam: float,
    tile: tuple[int, ...] | None = None,
    overlap: tuple[int, ...] | None = None,
    device: torch.device,
    precision: Precision | None = None,
    planar: bool = False,
) -> np.ndarray:
    """Denoise one normalised plane ``(C, H, W)`` (or volume ``(C, D, H, W)``)
    tile by tile; ``tile`` and ``overlap`` per spatial axis (default `tile_shape`).

    Tiles are laid on the plane padded to the network's pooling grid
    (`UNet.multiples`) and every tile starts on that grid, so the network's
    pooling sees the same pixel groups as in untiled inference. Tiles reaching
    past the plane are cut to it and padded after the masker, as the untiled
    plane is. Tiles overlapping by ``overlap``
    are blended with ramps that fade out each tile's border, where it lacks
    context. Tiled output therefore matches untiled output closely.
    """
    ms = net.multiples
    spatial = plane.shape[1:]
    if len(spatial) != len(ms):
        raise ValueError(
            f"A {net.dims}D network denoises {'planes' if net.dims == 2 else 'volumes'}; got a "
            f"block of shape {plane.shape}."
        )
    default_tile, default_overlap = tile_shape(net, None, None)
    tile, overlap = tuple(tile or default_tile), tuple(default_overlap if overlap is None else overlap)
    for t, o, (yx, m) in zip(tile, overlap, _axes(net)):
        least = max(2 * cell, m) if yx else m
        if t < least:
            name = "tile_size" if yx else "tile_depth"
            raise ValueError(f"{name} must be at least {least}, got {t}.")
        if not 0 <= o < t:
            raise ValueError(f"tile_overlap must be in [0, tile_size), got {o}.")

    size = tuple(s + (-s % m) for s, m in zip(spatial, ms))  # on the pooling grid
    padding = pad_mode(*spatial, *(n - s for n, s in zip(size, spatial)))

    def run(block: np.ndarray) -> np.ndarray:
        y = torch.from_numpy(np.ascontiguousarray(block)[None]).to(device)
        return predict(net, y, mode, cell, lam, precision, planar, padding)[0].cpu().numpy()

    if all(s <= t for s, t in zip(spatial, tile)):
        return run(plane)
    tile = tuple(t - t % m for t, m in zip(tile, ms))
    # The tile at the far end holds t - pad pixels of data: reflecting its pad, as the
    # plane's, needs more than pad of them (a tile of one grid step may hold fewer).
    tile = tuple(t + m if t <= 2 * (n - s) else t for t, m, s, n in zip(tile, ms, spatial, size))
    overlap = tuple(min(-(-o // m) * m, t - m) for o, t, m in zip(overlap, tile, ms))
    out = np.zeros(plane.shape, dtype=np.float32)
    tile = tuple(min(t, n) for t, n in zip(tile, size))
    starts = [tile_starts(n, t, o) for n, t, o in zip(size, tile, overlap)]
    # A tile reaching past the data is cut to it: predict pads it after the masker,
    # as the network pads an untiled plane.
    cuts = [[slice(c, min(c + t, s)) for c in axis] for axis, t, s in zip(starts, tile, spatial)]
    ramps = [[_ramp(t, c, n, o)[: b.stop - b.start] for c, b in zip(axis, bs)]
             for axis, bs, t, n, o in zip(starts, cuts, tile, size, overlap)]  # fmt: skip
    for index in itertools.product(*(range(len(axis)) for axis in starts)):
        box = tuple(bs[i] for bs, i in zip(cuts, index))
        wgt = functools.reduce(np.multiply.outer, [rs[i] for rs, i in zip(ramps, index)])
        out[(slice(None), *box)] += run(plane[(slice(None), *box)]) * wgt
    # Every tile's weight is the outer product of its ramps along each axis and the
    # tiles form a grid, so their sum is the outer product of each axis' sum: dividing
    # by those in place needs no image-sized array of weights, nor a second output.
    for axis, (bs, rs) in enumerate(zip(cuts, ramps)):
        total = np.zeros(spatial[axis], dtype=np.float32)
        for b, r in zip(bs, rs):
            total[b] += r
        out /= total.reshape((-1,) + (1,) * (len(spatial) - 1 - axis))
    return out


def denoise_ensemble(
    net: UNet,
    plane: np.ndarray,
    subsample: tuple[int, int] = (1, 1),
    ensemble: bool = False,
    **kwargs,
) -> np.ndarray:
    """`denoise_subsampled`, averaged over the 8 flips and 90-degree rotations
    (in the Y-X plane) of ``plane`` when ``ensemble`` (each output turned back
    first): a self-ensemble, 8x the cost. With a sub-sampling that differs
    between the axes, only the 4 flips (a rotation would swap the sub-sampled axis)."""
    if not ensemble:
        return denoise_subsampled(net, plane, subsample, **kwargs)
    turns = (0, 1, 2, 3) if subsample[0] == subsample[1] else (0, 2)
    out = np.zeros(plane.shape, dtype=np.float32)
    for k in turns:
        for flip in (False, True):
            view = np.rot90(plane, k, axes=(-2, -1))
            view = view[..., ::-1] if flip else view
            res = denoise_subsampled(net, np.ascontiguousarray(view), subsample, **kwargs)
            res = res[..., ::-1] if flip else res
            out += np.rot90(res, -k, axes=(-2, -1))
    return out / (2 * len(turns))


def denoise_subsampled(
    net: UNet, plane: np.ndarray, subsample: tuple[int, int] = (1, 1), **kwargs
) -> np.ndarray:
    """`denoise_plane` on each pixel-shuffle sub-image of ``plane`` (every
    ``sy``-th row and ``sx``-th column, from each phase), reassembled."""
    sy, sx = subsample
    if sy == sx == 1:
        return denoise_plane(net, plane, **kwargs)
    out = np.empty(plane.shape, dtype=np.float32)
    for py in range(sy):
        for px in range(sx):
            sub = np.ascontiguousarray(plane[..., py::sy, px::sx])
            out[..., py::sy, px::sx] = denoise_plane(net, sub, **kwargs)
    return out


def iter_denoised_planes(
    planes,
    net: UNet,
    mean: np.ndarray,
    std: np.ndarray,
    *,
    mode: str,
    cell: int,
    lam: float,
    tile_size: int | None,
    tile_overlap: int | None,
    device: torch.device,
    tile_depth: int | None = None,
    precision: Precision | None = None,
    subsample: tuple[int, int] = (1, 1),
    ensemble: bool = False,
    planar: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, plane)`` for each plane (or volume) of a `Planes`, in
    input units, float32, in the input's own axis order.

    On the CPU, from the first plane to the last, blocks under
    `INFERENCE_MMAP_ABOVE` are kept in the heap for reuse (`keep_memory`): a
    2D tile's activations, instead of page-faulting in again for every network
    pass (a default 3D tile's are larger and stay mapped)."""
    dims = planes.spatial_dims
    keep = keep_memory(INFERENCE_MMAP_ABOVE) if device.type == "cpu" else contextlib.nullcontext()
    with keep:
        for i in range(planes.n):
            if should_stop is not None and should_stop():
                return
            out = denoise_ensemble(
                net,
                normalize(planes.plane(i, cache=False), mean, std, dims),
                subsample,
                ensemble,
                mode=mode,
                cell=cell,
                lam=lam,
                tile_size=tile_size,
                tile_overlap=tile_overlap,
                tile_depth=tile_depth,
                device=device,
                precision=precision,
                planar=planar,
            )
            yield i, planes.from_cyx(denormalize(out, mean, std, dims))
