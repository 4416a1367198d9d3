"""The training loop, as a generator of events.

``model = yield from train_events(...)``, or drive it by hand: every event is
yielded to the caller (the API, the CLI, the napari worker), which may send
`STOP` back to end training early and still get the model, or a
`PreviewPlane` to preview another plane. Closing the generator aborts
without a model.

The file reads top to bottom: set-up (`_prepare`), the loop
(`train_events`), the summary (`_summary`), then small helpers.
"""

from __future__ import annotations

import collections
import copy
import datetime
import math
import statistics
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_b2u.config import TrainConfig, subsample_for, z_levels
from napari_b2u.core import b2u_loss, global_mapper, global_masker, lambda_schedule, lr_schedule
from napari_b2u.core.unet import UNet
from napari_b2u.engine._malloc import keep_memory
from napari_b2u.engine.data import (
    PatchSampler,
    Planes,
    PlaneSet,
    as_planes,
    denormalize,
    estimate_normalization,
    normalize,
    patch_shape,
)
from napari_b2u.engine.device import memory_format, resolve_device, use_all_cores
from napari_b2u.engine.events import (
    STOP,
    Command,
    Done,
    Event,
    Preview,
    PreviewPlane,
    Started,
    Step,
)
from napari_b2u.engine.inference import denoise_subsampled
from napari_b2u.engine.model import Model
from napari_b2u.engine.noise import NoiseReport, noise_report, visible_check, visible_residuals
from napari_b2u.engine.precision import Precision, resolve_precision
from napari_b2u.engine.summary import StopReason, TrainingSummary

#: Seconds between ``Step`` events (each one costs a device sync).
REPORT_INTERVAL = 0.25
#: ``cap_steps``: a time-budgeted run ends at ``CAP_SCALE * pixels**0.25`` steps.
#: Measured (Set12, sigma 25, benchmarks.trajectory/pooled): one 256² image is level
#: from 3000 to 4200 steps and falls to 23.6 dB by 16000; seven are best near 7000;
#: twelve of both sizes score 29.22 at 9868 steps, 28.98 at 21283, 27.96 at 48682.
CAP_SCALE = 256.0
#: Side of the crop that ``Preview`` events show, and for volumes the slices denoised around it.
PREVIEW_SIZE = 256
PREVIEW_DEPTH = 16
#: A reported loss this many times the median of the recent reports counts as a
#: divergence, like NaN/inf (the 3D phantom jumped 1e4-1e8x near step 2440 of 8523,
#: stayed 100x up and ended at 7 dB; before that its report means stayed within 1.2x
#: of it). The weights kept are validated ones: taken at a report and followed by a
#: report within `LOSS_HEALTHY` times the median (the last report's weights before
#: the jump were already broken: -5.9 dB; the last within 3x: 14 dB).
LOSS_JUMP, LOSS_HEALTHY = 100.0, 1.5
#: Reports that median is taken over, and how many are needed before it is used.
LOSS_WINDOW, LOSS_WARMUP = 100, 20
#: `TrainConfig.grad_clip` clips at a multiple of the median gradient norm of this
#: many steps, from the step after the first this many.
GRAD_WINDOW = 100
#: The clock that time budgets, ``Step`` reports and previews read (seconds);
#: tests replace it to run a budget without depending on the machine's speed.
clock = time.perf_counter


@dataclass
class _Run:
    """Everything the loop needs, made by `_prepare`."""

    config: TrainConfig
    planes: Planes | PlaneSet
    device: torch.device
    precision: Precision
    threads: int | None
    net: UNet
    optimizer: torch.optim.Optimizer
    sampler: PatchSampler
    mean: np.ndarray
    std: np.ndarray
    subsample: tuple[int, int]
    noise: NoiseReport | None
    step: int  # steps done before this run (a continued run)
    elapsed: float  # seconds done before this run
    cap: int | None  # the step cap of a time-budgeted run (TrainConfig.cap_steps)
    grad_norms: np.ndarray | None  # the clipper's window of a continued run


def _prepare(image: Any, axes: str | None, config: TrainConfig, init: Model | None) -> _Run:
    """Data, device, seeds, network (fresh, continued or fine-tuned), the
    noise check that decides the decorrelation, optimizer and patch sampler."""
    planes = as_planes(image, axes, config.spatial_dims)
    smallest = max(8, 2 * config.cell)
    if min(planes.height, planes.width) < smallest:
        raise ValueError(
            f"The image planes are {planes.height}x{planes.width} pixels; training needs at least "
            f"{smallest}x{smallest}. Train on a larger image (or a stack) and apply the model to this one."
        )
    if planes.spatial_dims == 3 and planes.depth < 2 * config.cell:
        raise ValueError(
            f"The volumes are {planes.depth} slices deep; 3D training needs at least "
            f"{2 * config.cell}. Train the stack as planes (spatial_dims=2)."
        )
    device = resolve_device(config.device)
    threads = use_all_cores() if device.type == "cpu" else None
    precision = resolve_precision(config.precision, device, "train")  # auto: timed on these threads
    if config.seed is not None:
        torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    noise = None
    if init is not None:
        _check_compatible(init, planes, config)
        net = copy.deepcopy(init.net)
        mean, std, subsample = init.mean, init.std, init.subsample
    else:
        net = UNet(
            planes.channels,
            features=config.features,
            depth=config.net_depth,
            dims=config.spatial_dims,
            z_pool=z_levels(config, min(config.patch_depth, planes.depth))
            if config.spatial_dims == 3
            else 0,
        )
        mean, std = estimate_normalization(planes)
        subsample = subsample_for(config.decorrelate)
        if subsample is None:  # "auto": measure the noise, sub-sample where it is correlated
            seen = planes.as_2d() if isinstance(planes, PlaneSet) else planes.array
            noise = noise_report(seen, axes=planes.axes, seed=config.seed or 0)
            subsample = noise.subsample
    _check_subsampled_size(planes, subsample, smallest)
    net.to(device, memory_format=memory_format(net)).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, elapsed, grad_norms = 0, 0.0, None
    if init is not None and not init.completed:  # continue a stopped run where it stopped
        step, elapsed, grad_norms = init.summary.steps, init.summary.seconds, init.grad_norms
        if init.optimizer_state is not None:
            optimizer.load_state_dict(init.optimizer_state)
    shape = patch_shape(planes, config.patch_yx, net.multiples, subsample, config.patch_depth)
    sampler = PatchSampler(planes, shape, mean, std, config.augment, rng, subsample)
    cap = step_cap(planes) if config.cap_steps and config.steps is None else None
    return _Run(
        config, planes, device, precision, threads, net, optimizer, sampler, mean, std,
        subsample, noise, step, elapsed, cap, grad_norms,
    )  # fmt: skip


def step_cap(planes: Planes | PlaneSet) -> int:
    """The steps after which a time-budgeted run stops gaining on data of this
    size (`TrainConfig.cap_steps`): ``CAP_SCALE * pixels**0.25``, pixels (or
    voxels) summed over all planes or volumes, channels not counted: 4096 for
    one 256² image, 9337 for Set12's twelve images (1.8 million pixels)."""
    parts = planes.parts if isinstance(planes, PlaneSet) else [planes]
    pixels = sum(p.n * math.prod(p.spatial_shape) for p in parts)
    return max(1, round(CAP_SCALE * pixels**0.25))


def b2u_forward(
    net: UNet,
    y: torch.Tensor,
    lam: float,
    config: TrainConfig,
    precision: Precision | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Blind2Unblind forward pass: loss, L_rev, L_reg for a batch ``y``.

    The masker and both network passes run in ``precision``; the mapper's
    sum and the loss in fp32.
    """
    precision = precision or Precision("fp32", y.device.type)
    planar = not config.mask_z
    with precision.autocast():
        volume, masks = global_masker(y, config.cell, planar=planar)
        out = net(volume)
        with torch.no_grad():
            visible = net(y)
    blind = global_mapper(out.float(), masks.float(), config.cell, planar=planar)
    return b2u_loss(blind, visible.float(), y, lam, config.eta)


def train_events(
    image: Any,
    axes: str | None = None,
    config: TrainConfig | None = None,
    *,
    init: Model | None = None,
    preview_plane: int | PreviewPlane | None = None,
    preview_interval: float = 5.0,
) -> Generator[Event, Command, Model]:
    """Train Blind2Unblind on ``image``, yielding events; returns the model.

    Parameters
    ----------
    image : array-like
        numpy, dask or zarr image or stack (see `Planes`).
    axes : str, optional
        One letter per dimension.
    config : TrainConfig, optional
        Hyper-parameters (default ``TrainConfig()``, or ``init.config``).
    init : Model, optional
        Start from this model's weights, normalisation and sub-sampling. If its
        run was stopped early, the run is continued where it stopped (same
        schedule, optimizer state); if it completed, a new run starts from its
        weights.
    preview_plane : int or PreviewPlane, optional
        Plane (for volumes with a `PreviewPlane`: volume and Z slice) to
        preview first; send `PreviewPlane` to change it. ``None``: no previews.
    preview_interval : float
        Seconds between previews.
    """
    config = config or (init.config if init is not None else TrainConfig())
    run = _prepare(image, axes, config, init)
    net, optimizer, device = run.net, run.optimizer, run.device
    command = yield Started(
        config=config,
        device=str(device),
        n_params=sum(p.numel() for p in net.parameters()),
        n_planes=run.planes.n,
        plane_shape=run.planes.spatial_shape,
        channels=run.planes.channels,
        patch_shape=run.sampler.shape,
        start_step=run.step,
        subsample=run.subsample,
        precision=run.precision.name,
        noise=run.noise,
        step_cap=run.cap,
    )
    preview = _Previews(preview_plane, preview_interval)
    scaler = run.precision.scaler()  # loss scaling for fp16; plain steps otherwise
    stopped = preview.read(command)  # a STOP answered to Started ends before any step

    clip = _GradClip(config.grad_clip, device, run.grad_norms)
    step, guard = run.step, _LossGuard(net, optimizer, clip, run.step)
    t0 = clock() - run.elapsed
    last_report = clock()
    losses: list[torch.Tensor] = []
    report_step, final_loss, message = step, None, None
    reason = StopReason.STOPPED
    with keep_memory():
        while not stopped:
            # 1. schedules from the fraction of the run done
            progress = run_progress(step, clock() - t0, config, run.cap)
            if progress >= 1.0:
                reason = _limit_reached(step, config, run.cap)
                break
            lam = lambda_schedule(progress, config.t1, config.lam0, config.lam1)
            lr = lr_schedule(progress, config.lr, config.lr_milestones, config.lr_gamma)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # 2. one optimisation step
            y = torch.from_numpy(run.sampler.batch(config.batch_size)).to(device, non_blocking=True)
            loss, l_rev, l_reg = b2u_forward(net, y, lam, config, run.precision)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # true gradients to clip (a no-op but for fp16)
            clip(net)
            scaler.step(optimizer)  # skipped by the scaler when fp16 gradients overflowed
            scaler.update()
            step += 1
            losses.append(torch.stack([loss, l_rev, l_reg]).detach())

            # 3. report a few times a second (.tolist() is a device sync)
            now = clock()
            if now - last_report < REPORT_INTERVAL and run_progress(step, now - t0, config, run.cap) < 1:
                continue
            mean_losses = torch.stack(losses).mean(0).tolist()
            losses.clear()
            diverged = guard.diverged(mean_losses, step)
            if diverged:
                message = (
                    f"{diverged}; training stopped and the weights of step "
                    f"{guard.good['step']} were kept. Lower the learning rate "
                    f"(lr={config.lr}) or check the image for extreme values."
                )
                step, reason = guard.restore(), StopReason.DIVERGED
                break
            guard.accept(mean_losses[0], step)
            final_loss = mean_losses[0]
            rate = (step - report_step) / max(now - last_report, 1e-9)
            report_step, last_report = step, now
            command = yield Step(
                step=step,
                elapsed=now - t0,
                progress=run_progress(step, now - t0, config, run.cap),
                loss=mean_losses[0],
                l_rev=mean_losses[1],
                l_reg=mean_losses[2],
                lam=lam,
                lr=lr,
                steps_per_second=rate,
                remaining=_remaining(step, now - t0, rate, config, run.cap),
            )
            stopped = preview.read(command)

            # 4. a live preview every few seconds
            if not stopped and preview.due():
                command = yield _preview(run, preview.plane, preview.z, step)
                net.train()
                stopped = preview.read(command)

    elapsed = clock() - t0
    model = Model(
        net.eval(), config, run.mean, run.std, None, optimizer.state_dict(), run.subsample,
        sample=_sample(run.planes), grad_norms=clip.history(),
    )  # fmt: skip
    if message is None and reason.completed:
        message = _check_visible(model)
        if message is not None:  # the blind output is then the better one: make it the default
            model.config = config.replace(mode="blind")
            message += " This model now denoises with it (mode='visible' still gives the other)."
            if model.subsample != (1, 1):
                message += SUBSAMPLED_CAVEAT
    yield Done(step=step, elapsed=elapsed, reason=reason, final_loss=final_loss, message=message)
    model.summary = _summary(run, step, elapsed, reason, final_loss, message)
    return model


#: Added to `visible_check`'s warning for a model trained on sub-sampled planes
#: (for correlated noise): there its reading can be wrong (FMD widefield: 2 of
#: 3 flags right, net +0.83 dB, so the switch to blind stays; docs/benchmarks.md).
SUBSAMPLED_CAVEAT = (
    " This model was trained on sub-sampled planes (for noise correlated between pixels),"
    " where the check can be wrong in either direction: compare the two outputs."
)


def _check_visible(model: Model) -> str | None:
    """`visible_check` on the model's training sample, when ``visible`` is its output."""
    if model.config.mode != "visible" or model.sample is None:
        return None
    return visible_check(model.sample, *_sample_outputs(model))


def sample_residuals(model: Model) -> tuple[float, float] | None:
    """The mean squared residuals of the visible and the blind output on the
    model's training sample, as the finished-run check reads them (None
    without a sample)."""
    if model.sample is None:
        return None
    return visible_residuals(model.sample, *_sample_outputs(model))


def _sample_outputs(model: Model) -> list[np.ndarray]:
    axes = "CYX" if model.spatial_dims == 2 else "CZYX"
    return [model.denoise(model.sample, axes=axes, mode=m) for m in ("visible", "blind")]


def _summary(
    run: _Run,
    step: int,
    elapsed: float,
    reason: StopReason,
    final_loss: float | None,
    message: str | None,
) -> TrainingSummary:
    from napari_b2u import __version__

    return TrainingSummary(
        steps=step,
        seconds=round(elapsed, 3),
        final_loss=final_loss,
        progress=1.0 if reason.completed else run_progress(step, elapsed, run.config, run.cap),
        stop_reason=reason,
        message=message,
        device=str(run.device),
        precision=run.precision.name,
        threads=run.threads,
        trained_on=_trained_on(run.planes),
        noise=run.noise.to_dict() if run.noise is not None else None,
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions={"napari_b2u": __version__, "torch": torch.__version__, "numpy": np.__version__},
    )


def run_to_end(
    events: Generator[Event, Command, Model], callback: Callable[[Event], Any] | None = None
) -> Model:
    """Drive a training generator to its end; ``callback(event)`` sees every
    event and may return `STOP`. Returns the model."""
    command = None
    try:
        while True:
            event = events.send(command)
            command = callback(event) if callback is not None else None
    except StopIteration as finished:
        return finished.value
    finally:
        events.close()


def run_progress(step: int, elapsed: float, config: TrainConfig, cap: int | None = None) -> float:
    """Fraction of the run done: the furthest of the step, time and ``cap`` limits."""
    done = 0.0
    for limit in (config.steps, cap):
        if limit is not None:
            done = max(done, step / limit)
    if config.time_budget is not None:
        done = max(done, elapsed / config.time_budget)
    return min(done, 1.0)


def _limit_reached(step: int, config: TrainConfig, cap: int | None) -> StopReason:
    if config.steps is not None and step >= config.steps:
        return StopReason.STEPS
    return StopReason.CAP if cap is not None and step >= cap else StopReason.TIME


class _LossGuard:
    """The weights to fall back on when the loss diverges (NaN/inf, or a jump to
    `LOSS_JUMP` times the median of the recent reports). A report's losses come
    from the weights of the report before, so a snapshot becomes ``good`` only
    once the next report's loss is healthy (within `LOSS_HEALTHY` times it).
    The gradient clipper's window is kept and restored with them, so a
    continued run does not clip against the norms of the diverging steps."""

    def __init__(
        self, net: UNet, optimizer: torch.optim.Optimizer, clip: _GradClip, step: int
    ) -> None:
        self.net, self.optimizer, self.clip = net, optimizer, clip
        self.good = self._snapshot(step)
        self.pending: dict[str, Any] | None = self.good
        self.recent: collections.deque[float] = collections.deque(maxlen=LOSS_WINDOW)

    def _level(self) -> float:
        return statistics.median(self.recent) if len(self.recent) >= LOSS_WARMUP else math.inf

    def diverged(self, mean_losses: list[float], step: int) -> str | None:
        """What went wrong with a report's mean losses (total first), or None."""
        loss, level = mean_losses[0], self._level()
        if loss > LOSS_JUMP * level:
            return f"The loss became {loss:.4g} at step {step} ({loss / level:.3g} times its recent level)"
        if not all(math.isfinite(v) for v in mean_losses):
            return f"The loss became {loss:.4g} at step {step}"
        return None

    def accept(self, loss: float, step: int) -> None:
        """Record a report's loss; snapshot the weights when it is healthy. An
        unhealthy one condemns `pending`'s weights: a breaking run alternates
        healthy and high losses before the jump (the fp32 3D phantom at step
        2402-2424), and a healthy loss after a high one does not clear them."""
        healthy = loss <= LOSS_HEALTHY * self._level()
        if healthy and self.pending is not None:  # it vouches for `pending`'s weights
            self.good = self.pending
        self.pending = self._snapshot(step) if healthy else None
        self.recent.append(loss)

    def restore(self) -> int:
        """Put the good weights, optimizer state and clipper window back;
        returns their step."""
        self.net.load_state_dict(self.good["net"])
        self.optimizer.load_state_dict(self.good["optimizer"])
        self.clip.norms.copy_(self.good["clip"][0])
        self.clip.count = self.good["clip"][1]
        return self.good["step"]

    def _snapshot(self, step: int) -> dict[str, Any]:
        """Copies of the weights, optimizer state and clipper window."""
        return {
            "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "clip": (self.clip.norms.clone(), self.clip.count),
            "step": step,
        }


class _GradClip:
    """Clips each step's gradient norm at ``factor`` times the median norm of the
    last `GRAD_WINDOW` steps (no clipping before that many). The norms stay on
    the device, so clipping adds no device sync. ``history``: the norms of a
    stopped run's last steps, oldest first, so its continuation clips at once."""

    def __init__(
        self, factor: float, device: torch.device, history: np.ndarray | None = None
    ) -> None:
        self.factor, self.count = factor, 0
        self.norms = torch.zeros(GRAD_WINDOW, device=device)
        if history is not None and len(history):
            last = torch.as_tensor(history[-GRAD_WINDOW:], dtype=torch.float32)
            self.count = len(last)
            self.norms[: self.count] = last.to(device)

    def history(self) -> np.ndarray:
        """The window's norms, oldest first (a device sync)."""
        n = min(self.count, GRAD_WINDOW)
        order = [(self.count - n + i) % GRAD_WINDOW for i in range(n)]
        return self.norms[order].cpu().numpy()

    def __call__(self, net: UNet) -> None:
        if not self.factor:
            return
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        norm = grad_norm(grads)
        if self.count >= GRAD_WINDOW:
            scale = (self.factor * self.norms.median() / (norm + 1e-12)).clamp(max=1.0)
            for g in grads:
                g.mul_(scale)
        last = self.norms[(self.count - 1) % GRAD_WINDOW]  # stands in for a non-finite norm
        self.norms[self.count % GRAD_WINDOW] = torch.where(torch.isfinite(norm), norm, last)
        self.count += 1


def grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The norm of all ``grads`` together, as a tensor on their device (no sync)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class _Previews:
    """Which plane to preview, and when the next preview is due."""

    def __init__(self, plane: int | PreviewPlane | None, interval: float) -> None:
        self.interval, self.last = interval, clock()
        if isinstance(plane, PreviewPlane):
            self.plane, self.z = plane.plane, plane.z
        else:
            self.plane, self.z = plane, None

    def read(self, command: Command) -> bool:
        """Take a command sent in; returns whether it was `STOP`."""
        if isinstance(command, PreviewPlane) and self.plane is not None:
            self.plane, self.z = int(command.plane), command.z
        return command is STOP

    def due(self) -> bool:
        if self.plane is None or clock() - self.last < self.interval:
            return False
        self.last = clock()
        return True


def _remaining(step: int, elapsed: float, rate: float, config: TrainConfig,
               cap: int | None = None) -> float | None:  # fmt: skip
    left = []
    if config.time_budget is not None:
        left.append(max(config.time_budget - elapsed, 0.0))
    for limit in (config.steps, cap):
        if limit is not None and rate > 0:
            left.append(max(limit - step, 0) / rate)
    return min(left) if left else None


def _preview(run: _Run, plane: int, z: int | None, step: int) -> Preview:
    """The visible output (one network pass) on a central crop of ``plane``
    (for volumes: of the slices around ``z``, showing slice ``z``)."""
    planes = run.planes
    plane = min(max(plane, 0), planes.n - 1)
    *depth, height, width = planes.sample_shape(plane)
    h, w = min(height, PREVIEW_SIZE), min(width, PREVIEW_SIZE)
    y0, x0 = (height - h) // 2, (width - w) // 2
    crop = [slice(y0, y0 + h), slice(x0, x0 + w)]
    if planes.spatial_dims == 3:
        z = min(max(depth[0] // 2 if z is None else z, 0), depth[0] - 1)
        d = min(depth[0], PREVIEW_DEPTH)
        z0 = min(max(z - d // 2, 0), depth[0] - d)
        crop.insert(0, slice(z0, z0 + d))
    block = planes.read(plane, *crop)
    out = denoise_subsampled(
        run.net.eval(),
        normalize(block, run.mean, run.std, planes.spatial_dims),
        run.subsample,
        mode="visible",  # one network pass; the blind and weighted outputs take cell**2 + 1
        cell=run.config.cell,
        lam=run.config.lam1,
        tile_size=PREVIEW_SIZE,
        tile_overlap=0,
        device=run.device,
        precision=run.precision,
    )
    out = denormalize(out, run.mean, run.std, planes.spatial_dims)
    if planes.spatial_dims == 3:
        out = out[:, z - z0]
    image = out[0] if out.shape[0] == 1 else np.moveaxis(out, 0, -1)
    shown = z if planes.spatial_dims == 3 else None
    return Preview(step=step, plane=plane, image=image, offset=(y0, x0), z=shown)


def _sample(planes: Planes) -> np.ndarray:
    """A central crop of the middle plane, at most 256 x 256 (of the middle
    volume, at most 32 x 192 x 192): the test input of exported packages."""
    sides = (256, 256) if planes.spatial_dims == 2 else (32, 192, 192)
    crop = [
        slice((n - min(n, side)) // 2, (n - min(n, side)) // 2 + min(n, side))
        for n, side in zip(planes.sample_shape(planes.n // 2), sides)
    ]
    return np.ascontiguousarray(planes.read(planes.n // 2, *crop))


def _trained_on(planes: Planes | PlaneSet) -> dict[str, Any]:
    """What the model file records of its training data: the array's shape,
    or for a `PlaneSet` each part's shape."""
    shape = (
        {"shapes": [list(s) for s in planes.shapes]}
        if isinstance(planes, PlaneSet)
        else {"shape": list(planes.shape)}
    )
    return {**shape, "dtype": str(planes.dtype), "axes": planes.axes}


def _check_compatible(init: Model, planes: Planes, config: TrainConfig) -> None:
    if init.channels != planes.channels:
        raise ValueError(
            f"Cannot continue training: the model takes {init.channels} channel(s), the image "
            f"has {planes.channels} (axes {planes.axes!r})."
        )
    if config.spatial_dims != init.net.dims:
        kinds = {2: "planes (spatial_dims=2)", 3: "volumes (spatial_dims=3)"}
        raise ValueError(
            f"Cannot continue training: the model denoises {kinds[init.net.dims]}, the config "
            f"asks for {kinds[config.spatial_dims]}. Train a new model for that."
        )
    asked_depth = config.depth or init.net.depth  # None: the model's own
    if (asked_depth, config.features) != (init.net.depth, init.net.features):
        raise ValueError(
            "Cannot continue training with a different network: the model has depth "
            f"{init.net.depth} / {init.net.features} features, the config asks for "
            f"{asked_depth} / {config.features}."
        )
    asked = subsample_for(config.decorrelate)
    if asked is not None and asked != init.subsample:
        raise ValueError(
            f"Cannot continue training with decorrelate={config.decorrelate!r}: the model was "
            f"trained with sub-sampling {init.subsample} (Y, X). Continue with "
            "decorrelate='auto' (keeps the model's) or train a new model."
        )


def _check_subsampled_size(planes: Planes, subsample: tuple[int, int], smallest: int) -> None:
    h, w = planes.height // subsample[0], planes.width // subsample[1]
    if min(h, w) < smallest:
        raise ValueError(
            f"Decorrelation sub-samples the {planes.height}x{planes.width} planes by {subsample} "
            f"(Y, X) to {h}x{w}, smaller than the {smallest}x{smallest} training needs. Use "
            "decorrelate='off' or train on larger images."
        )
