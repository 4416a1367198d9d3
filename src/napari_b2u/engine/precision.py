"""Numeric precision of the network's passes: what the hardware runs fastest.

``auto`` picks bf16 on CPUs with AMX or AVX512-BF16 units (detected, not
assumed) and on CUDA GPUs with bf16 support (Ampere and newer), fp16 with a
gradient scaler on older CUDA GPUs, and fp32 elsewhere (MPS included:
unmeasured here). Only the network's passes (and the masker and mapper
around them) run under autocast; the loss, the optimizer and the master
weights stay fp32, and outputs are float32. ``benchmarks/speed.py`` measures
the choice: on this project's CPUs bf16 trains 2-3x faster per step.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch

from napari_b2u.config import PRECISIONS

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` (``"fp32"``, ``"bf16"`` or ``"fp16"``) on ``device``."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for fp32."""
        return _DTYPES[self.name]

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling (bf16 has fp32's range)."""
        return self.name == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to ``dtype`` on the device (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def for_inference(self, net: torch.nn.Module) -> torch.nn.Module:
        """The network to denoise with: for bf16 a copy with bf16 weights, which
        runs without autocast's casts (measured 52 ms against autocast's 83 ms
        and fp32's 123 ms for a 512 x 512 plane, benchmarks/speed.py); else ``net``."""
        if self.name != "bf16":
            return net
        return copy.deepcopy(net).to(torch.bfloat16)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled for fp16 only (disabled: plain steps)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto`` -> the fastest precision ``device`` runs well; others are checked."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}.")
    if name == "auto":
        name = auto_precision(device)
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"{torch.cuda.get_device_name(device)} has no bf16 support; use precision='fp16' "
            "or 'auto'."
        )
    if name != "fp32" and device.type == "mps":
        raise ValueError("Mixed precision is not supported on MPS here; use precision='fp32'.")
    return Precision(name, device.type)


def auto_precision(device: torch.device) -> str:
    """What ``auto`` means on ``device``."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has AMX tiles or AVX512-BF16 (bf16 matmuls run at
    several times the fp32 rate); without them bf16 is emulated and slower."""
    probes = [getattr(torch.cpu, p, None) for p in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if any(probe is not None for probe in probes):
        return any(bool(probe()) for probe in probes if probe is not None)
    return bool(_cpuinfo_flags() & {"amx_bf16", "avx512_bf16"})  # older torch, Linux


def _cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
