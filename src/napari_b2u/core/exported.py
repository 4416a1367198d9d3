"""The network as other software runs it: the one-pass ``visible`` output of
a trained model, pixel-shuffle sub-sampling included.

This is the architecture that bioimage.io packages written by napari-b2u
name (``napari_b2u.core.exported.VisibleDenoiser``): a consumer builds it
from the package's keyword arguments and loads the state dict. The masker
is not needed to run a trained model (the visible output is one pass of
the UNet), so nothing else of Blind2Unblind is in it.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_b2u.core.unet import UNet


class VisibleDenoiser(nn.Module):
    """``f(y)`` on normalised images ``(N, C, H, W)`` (or volumes
    ``(N, C, D, H, W)``), applied to each pixel-shuffle sub-image when the
    model was trained decorrelated (``subsample`` ``(sy, sx)``).

    Parameters
    ----------
    in_channels : int
        Image channels.
    features : int
        UNet width.
    depth : int
        UNet depth.
    dims : int
        2 or 3.
    z_pool : int
        UNet levels that pool Z (3D).
    subsample_y : int
        Sub-sampling along Y (1: none).
    subsample_x : int
        Sub-sampling along X (1: none).
    """

    def __init__(
        self,
        in_channels: int = 1,
        features: int = 16,
        depth: int = 4,
        dims: int = 2,
        z_pool: int = 0,
        subsample_y: int = 1,
        subsample_x: int = 1,
    ) -> None:
        super().__init__()
        self.unet = UNet(in_channels, features=features, depth=depth, dims=dims, z_pool=z_pool)
        self.sy, self.sx = int(subsample_y), int(subsample_x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sy == 1 and self.sx == 1:
            return self.unet(x)
        out = torch.empty_like(x)
        for py in range(self.sy):
            for px in range(self.sx):
                out[..., py :: self.sy, px :: self.sx] = self.unet(x[..., py :: self.sy, px :: self.sx])
        return out
