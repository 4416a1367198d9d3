"""The global masker Omega and the global mapper h (method sections 1-3 and,
for volumes ``(N, C, D, H, W)``, section 10)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F


def _kernel(ndim: int, channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The neighbour kernel, ``(C, 1, 3, ...)``: centre 0, and for each neighbour
    ``2 ** -(number of offset axes - 1)``, normalised to sum 1. In 2D that is
    ``[[.5, 1, .5], [1, 0, 1], [.5, 1, .5]] / 6``; in 3D faces 1, edges 0.5,
    corners 0.25, over 14."""
    weights = torch.zeros((3,) * ndim, dtype=torch.float64)
    for offset in itertools.product((-1, 0, 1), repeat=ndim):
        moved = sum(o != 0 for o in offset)
        if moved:
            weights[tuple(o + 1 for o in offset)] = 2.0 ** (1 - moved)
    weights /= weights.sum()
    return weights.to(dtype=dtype, device=device).expand(channels, 1, *weights.shape)


def interpolate(y: torch.Tensor) -> torch.Tensor:
    """Replace every pixel (voxel) by a weighted mean of its neighbours.

    Each channel is convolved on its own with a fixed kernel, stride 1, zero
    padding 1: for images ``(N, C, H, W)`` ``[[.5, 1, .5], [1, 0, 1], [.5, 1, .5]] / 6``;
    for volumes ``(N, C, D, H, W)`` the 3x3x3 kernel with weight 1 for the 6
    face neighbours, 0.5 for the 12 edge and 0.25 for the 8 corner neighbours,
    over 14. The centre weight is 0, so the result at a pixel never sees that pixel.

    Parameters
    ----------
    y : torch.Tensor
        Images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)``, floating point.

    Returns
    -------
    torch.Tensor
        ``y_c``, same shape and dtype as ``y``.
    """
    nd = _spatial_dims(y, "y")
    kernel = _kernel(nd, y.shape[1], y.dtype, y.device)
    conv = F.conv2d if nd == 2 else F.conv3d
    return conv(y, kernel, stride=1, padding=1, groups=y.shape[1])


def cell_masks(
    shape: tuple[int, ...], cell: int, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The ``K = cell ** len(shape)`` masks of one image or volume, ``(K, 1, *shape)``.

    Mask ``k`` is 1 where the coordinates modulo ``cell`` are the digits of
    ``k`` in base ``cell``: ``(row % cell, col % cell) == (k // cell, k % cell)``
    in 2D, ``(z % c, row % c, col % c) == (k // c**2, (k // c) % c, k % c)`` in 3D.
    """
    if cell < 2:
        raise ValueError(f"cell must be >= 2, got {cell}")
    phase = torch.zeros(shape, dtype=torch.long, device=device)
    for axis, size in enumerate(shape):
        coords = torch.arange(size, device=device) % cell
        view = [1] * len(shape)
        view[axis] = size
        phase = phase * cell + coords.view(view)
    ks = torch.arange(cell ** len(shape), device=device).view(-1, *([1] * len(shape)))
    return (phase.unsqueeze(0) == ks).to(dtype).unsqueeze(1)


def copies(y: torch.Tensor, cell: int, planar: bool = False) -> int:
    """``K``, the number of masked copies per image: ``cell`` to the power of the
    masked dimensions (2 for images, 3 for volumes, 2 for ``planar`` volumes)."""
    nd = _spatial_dims(y, "y")
    return cell ** (2 if planar else nd)


def global_masker(
    y: torch.Tensor, cell: int = 2, *, planar: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the masked volume ``Omega_y`` of a batch of images or volumes.

    Copy ``k`` of each image hides the pixels of phase ``k`` (see `cell_masks`)
    and replaces them by `interpolate`; every pixel is hidden in exactly one copy.

    Parameters
    ----------
    y : torch.Tensor
        Noisy images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)``.
    cell : int
        Side of the masking cell; ``K = cell ** 2`` copies per image,
        ``cell ** 3`` per volume.
    planar : bool
        Volumes only: hide by the in-plane (Y, X) phase in every slice and
        interpolate from in-plane neighbours only (``K = cell ** 2``). Every
        voxel is still hidden in exactly one copy; the voxels above and below
        a hidden one are hidden too (each replaced by its own slice's
        interpolation), while the visible voxels around them in the
        neighbouring slices stay in view: a cheaper blind spot
        (``cell ** 2 + 1`` network passes a step instead of ``cell ** 3 + 1``)
        that still lets the network see along Z.

    Returns
    -------
    volume : torch.Tensor
        ``(N*K, C, ...)``; row ``n*K + k`` is copy ``k`` of image ``n``.
    masks : torch.Tensor
        ``(N*K, 1, ...)`` in the same order, 1 at hidden pixels, in ``y``'s dtype.
    """
    nd = _spatial_dims(y, "y")
    n, c, *spatial = y.shape
    if planar and nd == 3:
        masks = cell_masks(tuple(spatial[1:]), cell, dtype=y.dtype, device=y.device)
        masks = masks.unsqueeze(2).expand(-1, -1, spatial[0], -1, -1)  # same phase in every slice
        d = spatial[0]
        y_c = interpolate(y.transpose(1, 2).reshape(n * d, c, *spatial[1:]))
        y_c = y_c.reshape(n, d, c, *spatial[1:]).transpose(1, 2)
    else:
        masks = cell_masks(tuple(spatial), cell, dtype=y.dtype, device=y.device)
        y_c = interpolate(y)
    k = masks.shape[0]
    volume = y_c[:, None] * masks[None] + y[:, None] * (1 - masks[None])
    return volume.reshape(n * k, c, *spatial), masks.repeat(n, *([1] * (nd + 1)))


def global_mapper(
    out: torch.Tensor, masks: torch.Tensor, cell: int = 2, *, planar: bool = False
) -> torch.Tensor:
    """Gather the blind denoised image from the network's output volume.

    ``blind[n] = sum_k out[n*K + k] * masks[n*K + k]``: each pixel is taken
    from the one copy in which it was hidden.

    Parameters
    ----------
    out : torch.Tensor
        Network output on the masked volume, ``(N*K, C, H, W)`` or ``(N*K, C, D, H, W)``.
    masks : torch.Tensor
        Masks from `global_masker`, ``(N*K, 1, ...)``.
    cell : int
        The cell the volume was made with.
    planar : bool
        As given to `global_masker`.

    Returns
    -------
    torch.Tensor
        ``blind``, shape ``(N, C, ...)``.
    """
    k = copies(out, cell, planar)
    nk, c, *spatial = out.shape
    if nk % k:
        raise ValueError(f"out has {nk} rows, not a multiple of K = {k} copies")
    if tuple(masks.shape) != (nk, 1, *spatial):
        raise ValueError(f"masks must have shape {(nk, 1, *spatial)}, got {tuple(masks.shape)}")
    return (out * masks).view(nk // k, k, c, *spatial).sum(dim=1)


def _spatial_dims(t: torch.Tensor, name: str) -> int:
    if t.ndim not in (4, 5):
        raise ValueError(
            f"{name} must have shape (N, C, H, W) or (N, C, D, H, W), got {tuple(t.shape)}"
        )
    return t.ndim - 2
