"""The authors' UNet, with depth and width as parameters (method section 7),
in 2D and, for volumes, in 3D."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, dims: int) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else _Conv3d
    return nn.Sequential(conv(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


def convolve(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int = 1) -> torch.Tensor:
    """`F.conv2d` or `F.conv3d`; but a volume of two slices trained under CPU
    bf16 autocast is convolved in fp32.

    oneDNN's bf16 weight gradient of a 3x3x3 convolution over two slices is
    wrong (torch 2.13 on an AVX512-BF16 CPU: relative error about 1 in every
    trial, at times inf; one, three or more slices, fp32 and the gradient of
    the input are right). Forward passes, without a gradient, keep bf16.
    """
    if x.dim() == 4:
        return F.conv2d(x, weight, bias, padding=padding)
    if x.shape[2] == 2 and weight.shape[2] > 1 and x.device.type == "cpu" and _training_in_cpu_bf16():
        with torch.autocast("cpu", enabled=False):
            b = None if bias is None else bias.float()
            return F.conv3d(x.float(), weight.float(), b, padding=padding).to(torch.bfloat16)
    return F.conv3d(x, weight, bias, padding=padding)


def _training_in_cpu_bf16() -> bool:
    if not torch.is_grad_enabled():
        return False
    try:
        return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() and torch.get_autocast_cpu_dtype() == torch.bfloat16


class _Conv3d(nn.Conv3d):
    """`nn.Conv3d` (same parameters and state dict) through `convolve`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return convolve(x, self.weight, self.bias, self.padding[0])


class UNet(nn.Module):
    """UNet of Blind2Unblind: LeakyReLU(0.1), 3x3 convs, 2x2 max-pooling,
    nearest upsampling with skip concatenation, a 1x1 output conv.

    The encoder keeps ``features`` channels at every level, the decoder
    ``2 * features``; the first skip is the input itself. With ``depth=5``
    and ``features=48`` this is the paper's network (about 1.1 M parameters).
    With ``dims=3`` the same network works on volumes ``(N, C, D, H, W)``:
    3x3x3 convolutions, and pooling by 2 in Y and X at every level but in Z
    only at the first ``z_pool`` levels (shallow or anisotropic stacks keep
    their Z resolution).

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
        the pooling grid (`multiples`) are reflect-padded and cropped back.
    dims : int
        2 (images) or 3 (volumes).
    z_pool : int
        ``dims=3`` only: how many of the ``depth`` levels also pool along Z
        (0 to ``depth``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        features: int = 48,
        depth: int = 5,
        dims: int = 2,
        z_pool: int = 0,
    ) -> None:
        super().__init__()
        if depth < 1 or features < 1 or in_channels < 1:
            raise ValueError("UNet needs depth >= 1, features >= 1 and in_channels >= 1")
        if dims not in (2, 3) or not 0 <= z_pool <= depth or (dims == 2 and z_pool):
            raise ValueError(f"UNet needs dims 2 or 3 and 0 <= z_pool <= depth (3D only), got "
                             f"dims={dims}, z_pool={z_pool}")  # fmt: skip
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.features, self.depth = features, depth
        self.dims, self.z_pool = dims, z_pool
        f = features
        self.head = nn.Sequential(_conv(in_channels, f, dims), _conv(f, f, dims))
        self.down = nn.ModuleList([_conv(f, f, dims) for _ in range(depth - 1)])
        self.bottom = _conv(f, f, dims)
        self.up = nn.ModuleList()
        for i in range(depth):
            level = depth - 1 - i  # resolution level this decoder block works at
            c_in = (f if i == 0 else 2 * f) + (in_channels if level == 0 else f)
            self.up.append(nn.Sequential(_conv(c_in, 2 * f, dims), _conv(2 * f, 2 * f, dims)))
        self.out = (nn.Conv2d if dims == 2 else nn.Conv3d)(2 * f, out_channels, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, a=0.1)
                nn.init.zeros_(m.bias)

    @property
    def multiple(self) -> int:
        """Image sides (Y, X) must be multiples of this (``2**depth``)."""
        return 2**self.depth

    @property
    def multiples(self) -> tuple[int, ...]:
        """Multiple of each spatial side: ``(Y, X)``, or ``(Z, Y, X)`` in 3D."""
        if self.dims == 2:
            return (self.multiple, self.multiple)
        return (2**self.z_pool, self.multiple, self.multiple)

    def _factor(self, level: int) -> tuple[int, ...] | int:
        """Pooling (and upsampling) factor of ``level`` (0: the first)."""
        if self.dims == 2:
            return 2
        return (2 if level < self.z_pool else 1, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        pads = [-s % m for s, m in zip(spatial, self.multiples)]
        if any(pads):
            crop = (..., *(slice(0, s) for s in spatial))
            return self.forward(pad_reflect(x, *pads))[crop]
        pool = F.max_pool2d if self.dims == 2 else F.max_pool3d
        skips = [x]
        x = pool(self.head(x), self._factor(0))
        for level, conv in enumerate(self.down, start=1):
            skips.append(x)
            x = pool(conv(x), self._factor(level))
        x = self.bottom(x)
        for i, block in enumerate(self.up):
            factor = self._factor(self.depth - 1 - i)
            scale = (float(factor),) * 2 if self.dims == 2 else tuple(map(float, factor))
            skip = skips.pop()
            if skips:
                x = block(torch.cat([F.interpolate(x, scale_factor=scale, mode="nearest"), skip], dim=1))
            else:
                x = _join_input(block, x, scale, skip)
        return self.out(x)


def _join_input(
    block: nn.Sequential, x: torch.Tensor, scale: tuple[float, ...], skip: torch.Tensor
) -> torch.Tensor:
    """``block(torch.cat([upsampled x, skip], dim=1))`` for the last decoder,
    whose skip is the network's input: its first convolution as the sum of
    two, one over the upsampled ``x`` and one over ``skip``, each with its
    part of the same weight (the second added in place: a 64 x 1024² volume's
    peak 1513 -> 1385 MB). ``x`` is upsampled here, so that without autograd
    the full-size upsampled tensor is freed after its convolution: a 32 x
    256² bf16 tile's peak 491 -> 333 MB, the volume's 1392 -> 1265-1276 MB
    (Xeon, `memory-xeon-noamx-bf16-*` in benchmarks/results).

    The same sum as one convolution of the concatenation (up to rounding) and
    the same parameters, but oneDNN's backward of the convolution over 33
    channels (32 + one image channel) took 1.8x that of the next one, over 32
    (11.6 against 6.3 ms in a profile of a default bf16 step). As two, a
    default training step is 6 % faster in fp32 and in bf16 (0.0875 ->
    0.0824 s and 0.0521 -> 0.0489 s, medians of three runs of
    ``benchmarks.speed --interleaved 3``, AVX512-BF16 EPYC); and no fp32 input is concatenated to
    bf16 features under autocast, nor a one-channel tensor, whose strides
    read as either layout, to channels-last ones.
    """
    (conv, act), rest = block[0], block[1:]
    c = x.shape[1]
    up = F.interpolate(x, scale_factor=scale, mode="nearest")
    y = convolve(up, conv.weight[:, :c], conv.bias)
    del up  # without autograd (inference) it is freed now
    y += convolve(skip, conv.weight[:, c:], None)  # in place: one full-size tensor less
    return rest(act(y))


def pad_mode(*sizes_and_pads: int) -> str:
    """How a block is padded: ``pad_mode(h, w, ph, pw)`` (or with the sides,
    then the pads, of every spatial axis) is ``"reflect"`` where every side
    is larger than its pad, else ``"replicate"`` (reflect padding cannot
    exceed the side minus one). Tiled inference pads by the same rule."""
    half = len(sizes_and_pads) // 2
    sizes, pads = sizes_and_pads[:half], sizes_and_pads[half:]
    return "reflect" if all(p < s for s, p in zip(sizes, pads)) else "replicate"


def pad_reflect(x: torch.Tensor, *pads: int, mode: str | None = None) -> torch.Tensor:
    """Pad the far end of each spatial axis of ``(N, C, ...)`` by ``pads``
    (one per spatial axis, in order), by `pad_mode`; ``mode="replicate"``
    replicates even where ``x`` could be reflected."""
    if mode not in (None, "reflect", "replicate"):
        raise ValueError(f"mode must be 'reflect' or 'replicate', got {mode!r}")
    spatial = x.shape[2:]
    flat: list[int] = []
    for p in reversed(pads):  # F.pad takes the last axis first
        flat += [0, p]
    return F.pad(x, flat, mode=mode if mode == "replicate" else pad_mode(*spatial, *pads))
