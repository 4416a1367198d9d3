"""Numeric precision of the network's passes: what the hardware runs fastest.

``auto`` picks bf16 on CUDA GPUs with bf16 support (Ampere and newer), fp16
with a gradient scaler on older CUDA GPUs, and fp32 on MPS (unmeasured here).
On a CPU it measures: where the CPU has bf16 instructions (AMX or
AVX512-BF16), a probe of well under a second times the default network in
both precisions, once per process and task (training, inference), and bf16
is picked only where it runs at least `MIN_SPEEDUP` times faster. The
instruction set alone does not tell: ``benchmarks/speed.py`` measured bf16
training 2.1x faster than fp32 on a Xeon with AMX, 1.5x on an AMD EPYC with
AVX512-BF16 (1.7x in training since the step is timed as training runs
it), and 0.7x (slower) on a Xeon whose AMX the virtual machine hides. Without bf16 instructions bf16 is emulated: fp32, no probe.

Only the network's passes (and the masker and mapper around them) run under
autocast; the loss, the optimizer and the master weights stay fp32, and
outputs are float32.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
from dataclasses import dataclass

import torch

from napari_b2u.config import PRECISIONS
from napari_b2u.core.unet import UNet
from napari_b2u.engine._malloc import INFERENCE_MMAP_ABOVE, keep_memory
from napari_b2u.engine.device import memory_format

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: What a precision is resolved for: the probe times what that task runs.
TASKS = ("train", "infer")
#: On a CPU, ``auto`` picks bf16 only where the probe measures it at least
#: this much faster than fp32 (below it, run-to-run noise could decide).
MIN_SPEEDUP = 1.15


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


def resolve_precision(name: str, device: torch.device, task: str = "train") -> Precision:
    """``auto`` -> the fastest precision ``device`` runs ``task`` (``"train"``
    or ``"infer"``) in; other names are checked."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}.")
    if name == "auto":
        name = auto_precision(device, task)
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"{torch.cuda.get_device_name(device)} has no bf16 support; use precision='fp16' "
            "or 'auto'."
        )
    if name != "fp32" and device.type == "mps":
        raise ValueError("Mixed precision is not supported on MPS here; use precision='fp32'.")
    return Precision(name, device.type)


def auto_precision(device: torch.device, task: str = "train") -> str:
    """What ``auto`` means on ``device`` for ``task``."""
    _check_task(task)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_bf16_instructions():
        return "bf16" if cpu_bf16_speedup(task) >= MIN_SPEEDUP else "fp32"
    return "fp32"


def cpu_has_bf16_instructions() -> bool:
    """Whether this CPU has AMX tiles or AVX512-BF16 (without them bf16 is
    emulated and slower than fp32; with them it may or may not be faster)."""
    probes = [getattr(torch.cpu, p, None) for p in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if any(probe is not None for probe in probes):
        return any(bool(probe()) for probe in probes if probe is not None)
    return bool(_cpuinfo_flags() & {"amx_bf16", "avx512_bf16"})  # older torch, Linux


def cpu_bf16_speedup(task: str = "train") -> float:
    """fp32 seconds over bf16 seconds for ``task`` with the default 2D network
    on this CPU at torch's current thread count, measured once per process and
    kept (a reading taken while other work loads the cores stays until the
    process ends; ``precision="fp32"`` or ``"bf16"`` skips the probe). 0.0
    where bf16 fails to run."""
    _check_task(task)
    try:
        return _measured_speedup(task, torch.get_num_threads())
    except RuntimeError:  # a torch build without some bf16 CPU kernel: stay in fp32
        return 0.0


@functools.cache
def _measured_speedup(task: str, threads: int) -> float:
    """Time the default network in both precisions, best of 3 each, interleaved:
    ``train`` a forward and backward pass under autocast on a batch of 8
    patches of 64 x 64 in the plain layout the patch sampler gives (as a
    training step), ``infer`` a bf16 copy's forward pass on a channels-last
    256 x 256 plane (as `Precision.for_inference` and `predict` run it)."""
    with torch.random.fork_rng(devices=[]):  # the caller's CPU random stream is left as it was
        net = UNet(1, features=16, depth=4)
        net.to(memory_format=memory_format(net))  # as training and inference hold it
        x = torch.randn((8, 1, 64, 64) if task == "train" else (1, 1, 256, 256))
    if task == "train":
        runs = {name: functools.partial(_train_pass, net, x, Precision(name, "cpu")) for name in ("fp32", "bf16")}
    else:
        net.eval()
        x = x.contiguous(memory_format=memory_format(net))
        bf16 = Precision("bf16", "cpu").for_inference(net)
        runs = {"fp32": functools.partial(_infer_pass, net, x), "bf16": functools.partial(_infer_pass, bf16, x.bfloat16())}
    best = dict.fromkeys(runs, float("inf"))
    # each task's passes in the allocator setting the task runs in (`keep_memory`)
    with keep_memory(None if task == "train" else INFERENCE_MMAP_ABOVE):
        for run in runs.values():
            run()  # warm-up: oneDNN builds its kernels on the first call
        for _ in range(3):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - t0)
    return best["fp32"] / best["bf16"]


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")


def _train_pass(net: UNet, x: torch.Tensor, precision: Precision) -> None:
    with precision.autocast():
        out = net(x)
    out.float().square().mean().backward()


@torch.inference_mode()
def _infer_pass(net: torch.nn.Module, x: torch.Tensor) -> None:
    net(x)


def _cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
