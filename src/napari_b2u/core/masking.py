"""The global masker Omega and the global mapper h (method sections 1-3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_KERNEL = ((0.5, 1.0, 0.5), (1.0, 0.0, 1.0), (0.5, 1.0, 0.5))


def interpolate(y: torch.Tensor) -> torch.Tensor:
    """Replace every pixel by a weighted mean of its 8 neighbours.

    Each channel is convolved on its own with the fixed kernel
    ``[[.5, 1, .5], [1, 0, 1], [.5, 1, .5]] / 6`` (stride 1, zero padding 1).
    The centre weight is 0, so the result at a pixel never sees that pixel.

    Parameters
    ----------
    y : torch.Tensor
        Images, shape ``(N, C, H, W)``, floating point.

    Returns
    -------
    torch.Tensor
        ``y_c``, same shape and dtype as ``y``.
    """
    _check_nchw(y, "y")
    channels = y.shape[1]
    kernel = torch.tensor(_KERNEL, dtype=y.dtype, device=y.device) / 6.0
    kernel = kernel.expand(channels, 1, 3, 3)
    return F.conv2d(y, kernel, stride=1, padding=1, groups=channels)


def cell_masks(
    height: int, width: int, cell: int, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The ``K = cell**2`` masks of one image, shape ``(K, 1, H, W)``.

    Mask ``k`` is 1 where ``(row % cell, col % cell) == (k // cell, k % cell)``.
    """
    if cell < 2:
        raise ValueError(f"cell must be >= 2, got {cell}")
    rows = torch.arange(height, device=device) % cell
    cols = torch.arange(width, device=device) % cell
    phase = (rows[:, None] * cell + cols[None, :]).view(1, 1, height, width)
    ks = torch.arange(cell * cell, device=device).view(-1, 1, 1, 1)
    return (phase == ks).to(dtype)


def global_masker(y: torch.Tensor, cell: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the masked volume ``Omega_y`` of a batch of images.

    Copy ``k`` of each image hides the pixels with
    ``(row % cell, col % cell) == (k // cell, k % cell)`` and replaces them by
    `interpolate`; every pixel is hidden in exactly one copy.

    Parameters
    ----------
    y : torch.Tensor
        Noisy images, shape ``(N, C, H, W)``.
    cell : int
        Side of the masking cell; ``K = cell * cell`` copies per image.

    Returns
    -------
    volume : torch.Tensor
        ``(N*K, C, H, W)``; row ``n*K + k`` is copy ``k`` of image ``n``.
    masks : torch.Tensor
        ``(N*K, 1, H, W)`` in the same order, 1 at hidden pixels, in ``y``'s dtype.
    """
    _check_nchw(y, "y")
    n, c, h, w = y.shape
    k = cell * cell
    masks = cell_masks(h, w, cell, dtype=y.dtype, device=y.device)  # (K, 1, H, W)
    y_c = interpolate(y)
    volume = y_c[:, None] * masks[None] + y[:, None] * (1 - masks[None])
    return volume.reshape(n * k, c, h, w), masks.repeat(n, 1, 1, 1)


def global_mapper(out: torch.Tensor, masks: torch.Tensor, cell: int = 2) -> torch.Tensor:
    """Gather the blind denoised image from the network's output volume.

    ``blind[n] = sum_k out[n*K + k] * masks[n*K + k]``: each pixel is taken
    from the one copy in which it was hidden.

    Parameters
    ----------
    out : torch.Tensor
        Network output on the masked volume, ``(N*K, C, H, W)``.
    masks : torch.Tensor
        Masks from `global_masker`, ``(N*K, 1, H, W)``.
    cell : int
        The cell the volume was made with.

    Returns
    -------
    torch.Tensor
        ``blind``, shape ``(N, C, H, W)``.
    """
    _check_nchw(out, "out")
    k = cell * cell
    nk, c, h, w = out.shape
    if nk % k:
        raise ValueError(f"out has {nk} rows, not a multiple of K = cell**2 = {k}")
    if masks.shape != (nk, 1, h, w):
        raise ValueError(f"masks must have shape {(nk, 1, h, w)}, got {tuple(masks.shape)}")
    return (out * masks).view(nk // k, k, c, h, w).sum(dim=1)


def _check_nchw(t: torch.Tensor, name: str) -> None:
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(t.shape)}")
