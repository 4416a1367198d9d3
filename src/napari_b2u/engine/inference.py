"""Inference: the three output modes, tiling with smooth blending, stacks
plane by plane. Memory is bounded by the tile size, not the image size."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch

from napari_b2u.config import MODES
from napari_b2u.core import global_mapper, global_masker
from napari_b2u.core.unet import UNet

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64


@torch.inference_mode()
def predict(net: UNet, y: torch.Tensor, mode: str, cell: int, lam: float) -> torch.Tensor:
    """Network output for normalised images ``y`` ``(N, C, H, W)``.

    ``visible = f(y)``, ``blind = h(f(Omega_y))`` and
    ``weighted = (blind + lam * visible) / (lam + 1)``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "visible":
        return net(y)
    volume, masks = global_masker(y, cell)
    # One image's K copies at a time keeps the peak at K, not N*K, activations.
    out = torch.cat([net(chunk) for chunk in volume.split(cell * cell)])
    blind = global_mapper(out, masks, cell)
    if mode == "blind":
        return blind
    return (blind + lam * net(y)) / (lam + 1.0)


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
    device: torch.device,
) -> np.ndarray:
    """Denoise one normalised plane ``(C, H, W)``, tile by tile (see
    `denoise_tiled`). When the device runs out of memory, the tile size
    is halved and the plane tried again, with a warning."""
    tile = int(tile_size or DEFAULT_TILE)
    smallest = max(2 * cell, net.multiple, 32)
    while True:
        try:
            overlap = DEFAULT_OVERLAP if tile_overlap is None else tile_overlap
            return denoise_tiled(
                net,
                plane,
                mode=mode,
                cell=cell,
                lam=lam,
                tile_size=tile,
                tile_overlap=min(overlap, tile // 2),
                device=device,
            )

        except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
            current = min(tile, max(plane.shape[1:]))
            if "out of memory" not in str(exc).lower() or current <= smallest:
                raise
            tile = max(current // 2 // net.multiple * net.multiple, smallest)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            warnings.warn(
                f"Out of memory on {device} with {current} px tiles; retrying with {tile} px tiles.",
                RuntimeWarning,
                stacklevel=2,
            )


def denoise_tiled(
    net: UNet,
    plane: np.ndarray,
    *,
    mode: str,
    cell: int,
    lam: float,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    device: torch.device,
) -> np.ndarray:
    """Denoise one normalised plane ``(C, H, W)`` tile by tile.

    The plane is padded once to a multiple of ``2**depth`` and every tile
    starts on that grid, so the network's pooling sees the same pixel
    groups as in untiled inference; tiles overlapping by ``tile_overlap``
    are blended with ramps that fade out each tile's border, where it lacks
    context. Tiled output therefore matches untiled output closely.
    """
    m = net.multiple
    tile = int(tile_size or DEFAULT_TILE)
    overlap = DEFAULT_OVERLAP if tile_overlap is None else int(tile_overlap)
    if tile < max(2 * cell, m):
        raise ValueError(f"tile_size must be at least {max(2 * cell, m)}, got {tile}.")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile_overlap must be in [0, tile_size), got {overlap}.")
    c, h, w = plane.shape

    def run(block: np.ndarray) -> np.ndarray:
        y = torch.from_numpy(np.ascontiguousarray(block)[None]).to(device)
        return predict(net, y, mode, cell, lam)[0].float().cpu().numpy()

    if h <= tile and w <= tile:
        return run(plane)
    tile = tile - tile % m
    overlap = min(-(-overlap // m) * m, tile - m)
    padded = pad_to_multiple(plane, m)
    ph, pw = padded.shape[1:]
    out = np.zeros((c, ph, pw), dtype=np.float32)
    weight = np.zeros((ph, pw), dtype=np.float32)
    th, tw = min(tile, ph), min(tile, pw)
    for y0 in tile_starts(ph, th, overlap):
        wy = _ramp(th, y0, ph, overlap)
        for x0 in tile_starts(pw, tw, overlap):
            wgt = wy[:, None] * _ramp(tw, x0, pw, overlap)[None, :]
            out[:, y0 : y0 + th, x0 : x0 + tw] += run(padded[:, y0 : y0 + th, x0 : x0 + tw]) * wgt
            weight[y0 : y0 + th, x0 : x0 + tw] += wgt
    out /= weight
    return out[:, :h, :w]


def pad_to_multiple(plane: np.ndarray, m: int) -> np.ndarray:
    """Pad ``(C, H, W)`` at the bottom/right to multiples of ``m``, as the
    UNet pads (reflect, or edge where the plane is too small to reflect)."""
    h, w = plane.shape[1:]
    ph, pw = -h % m, -w % m
    if not (ph or pw):
        return plane
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(plane, ((0, 0), (0, ph), (0, pw)), mode=mode)


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
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, plane)`` for each plane of a `Planes`, in
    input units, float32, in the input's own axis order."""
    mean_ = mean.reshape(-1, 1, 1)
    std_ = std.reshape(-1, 1, 1)
    for i in range(planes.n):
        if should_stop is not None and should_stop():
            return
        x = (planes.plane(i, cache=False) - mean_) / std_
        out = denoise_plane(
            net,
            x,
            mode=mode,
            cell=cell,
            lam=lam,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            device=device,
        )
        out *= std_
        out += mean_
        yield i, planes.from_cyx(out)
