"""Precision: auto picks what the hardware runs fast; fp16 steps are loss-scaled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_b2u.api import TrainConfig, load_model, train
from napari_b2u.engine import precision as precision_module
from napari_b2u.engine.precision import Precision, auto_precision, resolve_precision

from .utils import TINY, smooth_image

CPU = torch.device("cpu")


def noisy(shape=(64, 64), seed=1):
    clean = smooth_image(shape)
    return clean + np.random.default_rng(seed).normal(0, 25, shape).astype(np.float32)


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_fast_bf16", lambda: True)
    assert auto_precision(CPU) == "bf16"
    monkeypatch.setattr(precision_module, "cpu_has_fast_bf16", lambda: False)
    assert auto_precision(CPU) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert auto_precision(torch.device("cuda")) == "bf16"  # Ampere and newer
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert auto_precision(torch.device("cuda")) == "fp16"  # older GPUs: fp16 + loss scaling
    assert auto_precision(torch.device("mps")) == "fp32"
    assert resolve_precision("fp32", CPU).dtype is None
    assert resolve_precision("bf16", CPU).dtype is torch.bfloat16
    assert resolve_precision("fp16", CPU).needs_scaler
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8", CPU)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp64")


def test_cpu_detection_matches_the_instruction_set():
    flags = precision_module._cpuinfo_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo here")
    assert precision_module.cpu_has_fast_bf16() == bool(flags & {"amx_bf16", "avx512_bf16"})


def test_bf16_training_keeps_fp32_weights_and_outputs(tmp_path):
    image = noisy()
    model = train(image, precision="bf16", steps=5, time_budget=None, **TINY)
    assert model.summary.precision == "bf16" and model.config.precision == "bf16"
    assert all(p.dtype == torch.float32 for p in model.net.parameters())
    out = model.denoise(image)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    # bf16 inference is close to fp32 inference of the same weights
    exact = model.denoise(image, precision="fp32")
    assert np.abs(out - exact).max() < 0.02 * np.ptp(image)
    path = tmp_path / "m.safetensors"
    model.save(path)
    assert load_model(path).summary.precision == "bf16"


def test_fp16_steps_are_loss_scaled_and_survive_overflow(monkeypatch):
    """An absurd initial loss scale makes fp16 gradients overflow: the scaler
    must skip those steps and lower the scale, and training must go on."""
    scalers = []
    original = Precision.scaler

    def huge_scale(self):
        scaler = original(self)
        if scaler.is_enabled():
            scaler._init_scale = 2.0**60
        scalers.append(scaler)
        return scaler

    monkeypatch.setattr(Precision, "scaler", huge_scale)
    model = train(noisy(), precision="fp16", steps=12, time_budget=None, **TINY)
    (scaler,) = scalers
    assert scaler.is_enabled() and scaler.get_scale() < 2.0**60  # overflow seen, scale lowered
    assert model.summary.steps == 12 and model.summary.stop_reason == "steps"
    assert all(torch.isfinite(p).all() for p in model.net.parameters())
    assert np.isfinite(model.denoise(noisy(), precision="fp16")).all()


def test_fp32_runs_without_a_scaler():
    assert not resolve_precision("fp32", CPU).scaler().is_enabled()
    model = train(noisy(), precision="fp32", steps=2, time_budget=None, **TINY)
    assert model.summary.precision == "fp32"
