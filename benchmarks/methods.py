"""Denoisers compared in the benchmarks, each given the same wall-clock budget.

``b2u`` is the package itself. ``n2v`` (a Noise2Void-style blind-spot
baseline) and ``supervised`` (trained on the clean target: the upper bound)
use the same UNet, patches, optimiser and schedule, so the differences come
from the method alone. ``bm3d`` is the classical tool. ``careamics`` is
Noise2Void as users run it (CAREamics 0.3.5), in its own virtual environment
(``benchmarks/careamics_env.sh``), called as a subprocess.

Stacks (3-D ``case.noisy``) are trained on as one data set by the learned
methods, as the plugin does; BM3D denoises them plane by plane.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_b2u.api import TrainConfig, train
from napari_b2u.core import UNet, lr_schedule
from napari_b2u.engine.data import Planes, estimate_normalization, patch_shape
from napari_b2u.engine.inference import denoise_plane
from napari_b2u.engine.training import run_progress


def b2u(case, budget: float, **overrides) -> dict[str, np.ndarray]:
    """Outputs of all three modes and the visible self-ensemble from one
    training run, plus run info. Volumes (``spatial_dims=3``) need ``ZYX``."""
    axes = "ZYX" if overrides.get("spatial_dims") == 3 else None
    model = train(case.noisy, axes=axes, **{"time_budget": budget, "device": "cpu", **overrides})
    out = {mode: model.denoise(case.noisy, axes=axes, mode=mode) for mode in ("weighted", "blind", "visible")}
    out["visible-ensemble"] = model.denoise(case.noisy, axes=axes, mode="visible", ensemble=True)
    out["_steps"] = model.summary.steps
    out["_precision"] = model.summary.precision  # what "auto" resolved to
    out["_mode"] = model.config.mode  # the output a user gets: 'blind' where the finished run's check flipped it
    return out


def b2u_struct(case, budget: float, **overrides) -> dict[str, np.ndarray]:
    """B2U with a structured blind spot along X (`benchmarks.structured`), no sub-sampling."""
    from benchmarks.structured import structured_blind_spot

    with structured_blind_spot():
        out = b2u(case, budget, **{"decorrelate": "off", **overrides})
    return {f"struct-{k}" if not k.startswith("_") else k: v for k, v in out.items()}


def bm3d(case, budget: float | None = None) -> dict[str, np.ndarray]:
    """BM3D with the true sigma (synthetic Gaussian) or an estimated one."""
    import bm3d as bm3d_lib
    from skimage.restoration import estimate_sigma

    planes = case.noisy.reshape(-1, *case.noisy.shape[-2:])
    out = np.empty_like(planes)
    for i, plane in enumerate(planes):
        sigma = case.sigma if case.sigma is not None else float(estimate_sigma(plane))
        out[i] = bm3d_lib.bm3d(plane / 255.0, sigma / 255.0).astype(np.float32) * 255.0
    return {"bm3d": out.reshape(case.noisy.shape)}


class MethodUnavailable(RuntimeError):
    """A method whose tools are not installed here: the harness skips it."""


CAREAMICS_PYTHON = Path(__file__).resolve().parents[1] / ".venv-careamics" / "bin" / "python"


def careamics3d(case, budget: float, threads: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """CAREamics N2V in 3D ("Enable 3D", Z patches of 16) on a Z x Y x X volume."""
    out = careamics(case, budget, threads, seed, volume=True)
    return {"careamics3d": out.pop("careamics"), **out}


def careamics(case, budget: float, threads: int = 2, seed: int = 0, volume: bool = False) -> dict[str, np.ndarray]:
    """CAREamics N2V with its defaults, our patch (64) and batch (4), ``budget`` s of training."""
    python = Path(os.environ.get("CAREAMICS_PYTHON", CAREAMICS_PYTHON))
    if not python.exists():
        raise MethodUnavailable(
            f"no CAREamics environment at {python}: run `bash benchmarks/careamics_env.sh` "
            "or set CAREAMICS_PYTHON to its python"
        )
    runner = Path(__file__).with_name("careamics_runner.py")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "in.npy"), Path(tmp, "out.npy")
        np.save(src, case.noisy.astype(np.float32))
        cmd = [str(python), str(runner), str(src), str(dst), "--budget", str(budget),
               "--threads", str(threads), "--seed", str(seed)] + (["--volume"] if volume else [])
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-4000:])
            raise RuntimeError(f"CAREamics run failed (exit {done.returncode})")
        info = json.loads(done.stdout.strip().splitlines()[-1])
        return {"careamics": np.load(dst), "_steps": info["steps"]}


def _train_same_net(case, budget: float, loss_fn, config: TrainConfig) -> tuple[UNet, np.ndarray, np.ndarray, int]:
    """The B2U loop with another loss: same net, patches, Adam and lr schedule."""
    torch.manual_seed(config.seed or 0)
    rng = np.random.default_rng(config.seed)
    planes = Planes(case.noisy)
    mean, std = estimate_normalization(planes)
    net = UNet(1, features=config.features, depth=config.net_depth).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    shape = patch_shape(planes, config.patch_yx, net.multiple)
    noisy3 = case.noisy.reshape(-1, *case.noisy.shape[-2:])
    pair = Planes(np.concatenate([noisy3, case.clean.reshape(noisy3.shape)]))  # noisy planes, then clean
    cfg = config.replace(time_budget=budget, steps=None)
    t0, step = time.perf_counter(), 0
    while (progress := run_progress(step, time.perf_counter() - t0, cfg)) < 1.0:
        for g in opt.param_groups:
            g["lr"] = lr_schedule(progress, config.lr, config.lr_milestones, config.lr_gamma)
        noisy, clean = _paired_batch(pair, len(noisy3), shape, float(mean[0]), float(std[0]), config.batch_size, rng)
        loss = loss_fn(net, torch.from_numpy(noisy), torch.from_numpy(clean), rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    return net.eval(), mean, std, step


def _paired_batch(planes, n, shape, m, s, size, rng):
    """Normalised noisy and clean patches at the same places, flipped/rotated alike.

    ``planes`` holds ``n`` noisy planes followed by their ``n`` clean ones.
    """
    ph, pw = shape
    noisy = np.empty((size, 1, ph, pw), np.float32)
    clean = np.empty_like(noisy)
    for b in range(size):
        p = int(rng.integers(n))
        y0 = int(rng.integers(planes.height - ph + 1))
        x0 = int(rng.integers(planes.width - pw + 1))
        pair = np.stack([planes.read(i, slice(y0, y0 + ph), slice(x0, x0 + pw))[0] for i in (p, p + n)])
        k, f0, f1 = int(rng.integers(4)), rng.integers(2), rng.integers(2)
        pair = np.rot90(pair, k, axes=(1, 2))
        pair = pair[:, ::-1] if f0 else pair
        pair = pair[:, :, ::-1] if f1 else pair
        noisy[b, 0], clean[b, 0] = pair
    return (noisy - m) / s, (clean - m) / s


def _n2v_loss(net, noisy, clean, rng, fraction: float = 0.02):
    """Noise2Void: replace ~2 % of pixels by a random neighbour, score only those."""
    mask = torch.from_numpy(rng.random(noisy.shape) < fraction)
    dy = torch.from_numpy(rng.integers(-2, 3, noisy.shape))
    dx = torch.from_numpy(rng.integers(-2, 3, noisy.shape))
    same = (dy == 0) & (dx == 0)
    dx = torch.where(same, torch.ones_like(dx), dx)
    n, c, h, w = noisy.shape
    yy = torch.arange(h).view(1, 1, h, 1).expand_as(noisy)
    xx = torch.arange(w).view(1, 1, 1, w).expand_as(noisy)
    src_y = (yy + dy).clamp(0, h - 1)
    src_x = (xx + dx).clamp(0, w - 1)
    flat = noisy.reshape(n, c, -1)
    neighbours = flat.gather(2, (src_y * w + src_x).reshape(n, c, -1)).reshape_as(noisy)
    masked = torch.where(mask, neighbours, noisy)
    out = net(masked)
    return ((out - noisy) ** 2)[mask].mean()


def _supervised_loss(net, noisy, clean, rng):
    return torch.mean((net(noisy) - clean) ** 2)


def _predict(net, case, mean, std) -> np.ndarray:
    planes = case.noisy.reshape(-1, *case.noisy.shape[-2:])
    out = np.empty_like(planes)
    for i, plane in enumerate(planes):
        x = (plane[None] - mean[0]) / std[0]
        y = denoise_plane(net, x.astype(np.float32), mode="visible", cell=2, lam=0.0, device=torch.device("cpu"))
        out[i] = y[0] * std[0] + mean[0]
    return out.reshape(case.noisy.shape)


def n2v(case, budget: float, **overrides) -> dict[str, np.ndarray]:
    net, mean, std, steps = _train_same_net(case, budget, _n2v_loss, TrainConfig().replace(**overrides))
    return {"n2v": _predict(net, case, mean, std), "_steps": steps}


def supervised(case, budget: float, **overrides) -> dict[str, np.ndarray]:
    net, mean, std, steps = _train_same_net(case, budget, _supervised_loss, TrainConfig().replace(**overrides))
    return {"supervised": _predict(net, case, mean, std), "_steps": steps}


METHODS = {
    "b2u": b2u,
    "b2u_struct": b2u_struct,
    "bm3d": bm3d,
    "careamics": careamics,
    "careamics3d": careamics3d,
    "n2v": n2v,
    "supervised": supervised,
}
