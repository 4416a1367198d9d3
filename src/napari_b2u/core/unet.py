"""The authors' 2D UNet, with depth and width as parameters (method section 7)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class UNet(nn.Module):
    """UNet of Blind2Unblind: LeakyReLU(0.1), 3x3 convs, 2x2 max-pooling,
    nearest upsampling with skip concatenation, a 1x1 output conv.

    The encoder keeps ``features`` channels at every level, the decoder
    ``2 * features``; the first skip is the input itself. With ``depth=5``
    and ``features=48`` this is the paper's network (about 1.1 M parameters).

    Parameters
    ----------
    in_channels : int
        Image channels.
    out_channels : int, optional
        Output channels; defaults to ``in_channels``.
    features : int
        Width of the encoder (the decoder is twice as wide).
    depth : int
        Number of 2x pooling steps. Inputs whose sides are not multiples of
        ``2**depth`` are reflect-padded and cropped back.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        features: int = 48,
        depth: int = 5,
    ) -> None:
        super().__init__()
        if depth < 1 or features < 1 or in_channels < 1:
            raise ValueError("UNet needs depth >= 1, features >= 1 and in_channels >= 1")
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.features, self.depth = features, depth
        f = features
        self.head = nn.Sequential(_conv(in_channels, f), _conv(f, f))
        self.down = nn.ModuleList([_conv(f, f) for _ in range(depth - 1)])
        self.bottom = _conv(f, f)
        self.up = nn.ModuleList()
        for i in range(depth):
            level = depth - 1 - i  # resolution level this decoder block works at
            c_in = (f if i == 0 else 2 * f) + (in_channels if level == 0 else f)
            self.up.append(nn.Sequential(_conv(c_in, 2 * f), _conv(2 * f, 2 * f)))
        self.out = nn.Conv2d(2 * f, out_channels, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.1)
                nn.init.zeros_(m.bias)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            return self.forward(pad_reflect(x, ph, pw))[..., :h, :w]
        skips = [x]
        x = F.max_pool2d(self.head(x), 2)
        for conv in self.down:
            skips.append(x)
            x = F.max_pool2d(conv(x), 2)
        x = self.bottom(x)
        for block in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.out(x)


def pad_reflect(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Pad the bottom/right of ``(N, C, H, W)`` by ``ph``/``pw`` pixels.

    Reflection where the image is large enough, else edge replication
    (reflect padding cannot exceed the side minus one).
    """
    h, w = x.shape[-2:]
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
