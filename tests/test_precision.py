"""Precision: auto picks what the hardware runs fast; fp16 steps are loss-scaled."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from napari_b2u.api import TrainConfig, load_model, train
from napari_b2u.engine import precision as precision_module
from napari_b2u.engine.device import use_all_cores
from napari_b2u.engine.inference import predict
from napari_b2u.engine.precision import Precision, auto_precision, resolve_precision

from .utils import TINY, smooth_image

CPU = torch.device("cpu")


def noisy(shape=(64, 64), seed=1):
    clean = smooth_image(shape)
    return clean + np.random.default_rng(seed).normal(0, 25, shape).astype(np.float32)


def test_auto_follows_the_hardware(monkeypatch):
    with pytest.raises(ValueError, match="task"):
        precision_module.cpu_bf16_speedup("predict")
    monkeypatch.setattr(precision_module, "cpu_has_bf16_instructions", lambda: True)
    monkeypatch.setattr(precision_module, "cpu_bf16_speedup", lambda task="train": 2.1)  # AMX
    assert auto_precision(CPU) == "bf16"
    monkeypatch.setattr(precision_module, "cpu_bf16_speedup", lambda task="train": 0.7)  # AMX hidden
    assert auto_precision(CPU) == "fp32"
    monkeypatch.setattr(precision_module, "cpu_bf16_speedup", lambda task="train": 1.0 if task == "train" else 2.0)
    assert auto_precision(CPU, "train") == "fp32" and auto_precision(CPU, "infer") == "bf16"
    monkeypatch.setattr(precision_module, "cpu_bf16_speedup", lambda task="train": pytest.fail("probed"))
    monkeypatch.setattr(precision_module, "cpu_has_bf16_instructions", lambda: False)
    assert auto_precision(CPU) == "fp32"  # emulated bf16: no probe needed
    monkeypatch.setattr(precision_module, "cpu_has_bf16_instructions", lambda: True)  # GPUs: never probed
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
    with pytest.raises(ValueError, match="task"):
        auto_precision(CPU, "predict")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp64")


def test_cpu_detection_matches_the_instruction_set():
    flags = precision_module._cpuinfo_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo here")
    assert precision_module.cpu_has_bf16_instructions() == bool(flags & {"amx_bf16", "avx512_bf16"})


@pytest.mark.parametrize("task", ["train", "infer"])
def test_the_bf16_probe_measures_once_and_leaves_the_random_stream_alone(task):
    precision_module._measured_speedup.cache_clear()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    speedup = precision_module.cpu_bf16_speedup(task)
    assert torch.equal(torch.rand(3), expected)
    assert 0 < speedup < float("inf")  # a ratio of two timings, whatever this CPU is
    assert precision_module.cpu_bf16_speedup(task) == speedup  # cached: the same figure
    assert precision_module._measured_speedup.cache_info().hits >= 1


def test_auto_on_this_cpu_is_what_the_probe_measured():
    """On this machine, whatever it is: bf16 only where bf16 instructions exist
    and the probe found them fast, and training records what it ran."""
    use_all_cores()  # the thread count training runs (and probes) at
    fast = precision_module.cpu_has_bf16_instructions() and (
        precision_module.cpu_bf16_speedup("train") >= precision_module.MIN_SPEEDUP
    )
    assert auto_precision(CPU) == ("bf16" if fast else "fp32")
    model = train(noisy(), precision="auto", steps=2, time_budget=None, **TINY)
    assert model.summary.precision == ("bf16" if fast else "fp32")


@pytest.mark.parametrize(("speedup", "expected"), [(0.7, "fp32"), (2.0, "bf16")])
def test_training_probes_at_the_thread_count_it_trains_with(monkeypatch, speedup, expected):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        pytest.skip("one core: every thread count is the same")
    calls = []
    monkeypatch.setattr(precision_module, "cpu_has_bf16_instructions", lambda: True)
    monkeypatch.setattr(
        precision_module, "_measured_speedup", lambda task, threads: calls.append((task, threads)) or speedup
    )
    torch.set_num_threads(1)  # training raises it to every core, and must probe after that
    model = train(noisy(), precision="auto", steps=2, time_budget=None, **TINY)
    assert calls and calls[0] == ("train", model.summary.threads) and model.summary.threads >= 2
    assert model.summary.precision == expected


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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_inference_feeds_the_network_in_its_weight_layout(precision):
    """A plain-layout input to channels-last weights made fp32 inference 1.2-3x
    slower (benchmarks/speed.py); every pass must get channels-last input."""
    model = train(noisy(), steps=1, time_budget=None, **TINY)
    net = Precision(precision, "cpu").for_inference(model.net.to(memory_format=torch.channels_last))
    layouts = []

    def record(_, args):  # with one channel both layouts are "contiguous": compare strides
        x = args[0]
        layouts.append(x.stride() == torch.empty_like(x, memory_format=torch.channels_last).stride())

    net.register_forward_pre_hook(record)
    y = torch.randn(2, 1, 32, 32)
    for mode in ("visible", "weighted"):
        out = predict(net, y, mode, cell=2, lam=20.0, precision=Precision(precision, "cpu"))
        assert out.dtype == torch.float32
    assert layouts and all(layouts)


@pytest.mark.parametrize(("dims", "channels"), [(2, 1), (2, 3), (3, 1)])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_input_skip_joins_the_decoder_without_a_concatenation(monkeypatch, dims, channels, precision):
    """The last decoder's first convolution runs as two, over the features
    and over the input, with the two parts of its weight: oneDNN's backward
    of a convolution over 2 * features + 1 channels was slow. Same values
    and gradients as the concatenation, in the net's dtype and layout."""
    from napari_b2u.core import UNet, unet
    from napari_b2u.engine.device import memory_format

    net = UNet(channels, features=4, depth=2, dims=dims, z_pool=1 if dims == 3 else 0)
    net.to(memory_format=memory_format(net))
    x = torch.randn(2, channels, *((4,) if dims == 3 else ()), 16, 16)
    conv_name = "conv2d" if dims == 2 else "conv3d"
    real_conv, seen = getattr(torch.nn.functional, conv_name), []

    def recording_conv(inp, weight, *args, **kwargs):
        seen.append(inp.shape[1])
        return real_conv(inp, weight, *args, **kwargs)

    entering = []
    net.up[-1][1].register_forward_pre_hook(lambda _, args: entering.append(args[0]))
    monkeypatch.setattr(torch.nn.functional, conv_name, recording_conv)
    with Precision(precision, "cpu").autocast():
        net(x)
    monkeypatch.undo()
    assert 2 * 4 + channels not in seen, seen  # no convolution of the concatenation
    (h,) = entering
    assert h.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert h.stride(1) == 1 and h.is_contiguous(memory_format=memory_format(net))

    def grads(run, precision):
        net.zero_grad()
        with Precision(precision, "cpu").autocast():
            out = run(x)
        out.float().square().sum().backward()
        return out.float(), [p.grad.clone() for p in net.parameters()]

    def error(got, want):
        return float((got - want).detach().norm() / want.detach().norm())

    got, got_grads = grads(net, precision)
    # the paper's form: the same forward, the last decoder on the concatenation
    def concatenated(block, x, scale, skip):
        return block(torch.cat([torch.nn.functional.interpolate(x, scale_factor=scale), skip], dim=1))

    monkeypatch.setattr(unet, "_join_input", concatenated)
    want, want_grads = grads(net, "fp32")
    if precision == "fp32":  # the same sums in another order
        assert error(got, want) < 1e-5
        assert max(map(error, got_grads, want_grads)) < 1e-5
    else:  # bf16 rounds differently, but no further from fp32 than the concatenation
        cat, cat_grads = grads(net, "bf16")
        assert error(got, want) <= 1.2 * error(cat, want) + 1e-3
        for g, c, w in zip(got_grads, cat_grads, want_grads):
            assert error(g, w) <= 1.2 * error(c, w) + 1e-2


@pytest.mark.parametrize("dims", [2, 3])
def test_inference_frees_the_last_upsampled_features_before_the_input_skip(monkeypatch, dims):
    """The full-size upsampled features of the last decoder are freed after
    their convolution, before the input skip's: one full-size tensor less
    at the network's peak (a 32 x 256² bf16 tile: 491 -> 333 MB)."""
    import weakref

    from napari_b2u.core import UNet, unet

    net = UNet(1, features=4, depth=2, dims=dims, z_pool=1 if dims == 3 else 0).eval()
    x = torch.randn(1, 1, *((4,) if dims == 3 else ()), 16, 16)
    real_interpolate, real_convolve = unet.F.interpolate, unet.convolve
    upsampled, alive_at_skip = [], []

    def recording_interpolate(*args, **kwargs):
        out = real_interpolate(*args, **kwargs)
        upsampled.append(weakref.ref(out))
        return out

    def recording_convolve(inp, weight, bias, padding=1):
        if inp.shape[1] == 1 and upsampled:  # the input skip's half of the last decoder's convolution
            alive_at_skip.append(upsampled[-1]() is not None)
        return real_convolve(inp, weight, bias, padding)

    monkeypatch.setattr(unet.F, "interpolate", recording_interpolate)
    monkeypatch.setattr(unet, "convolve", recording_convolve)
    with torch.inference_mode():
        out = net(x)
    monkeypatch.undo()
    assert len(upsampled) == 2 and alive_at_skip == [False]
    with torch.inference_mode():
        assert torch.equal(out, net(x))


@pytest.mark.parametrize("slices", [2, 4])
def test_bf16_weight_gradients_of_thin_volumes_match_fp64(slices):
    """oneDNN's bf16 weight gradient of a 3x3x3 convolution over two slices
    was wrong (relative error about 1, at times inf, on an AVX512-BF16 CPU):
    such convolutions train in fp32, so every gradient stays near fp64's."""
    from napari_b2u.core import UNet

    torch.manual_seed(0)
    net = UNet(1, features=8, depth=1, dims=3).to(memory_format=torch.channels_last_3d)
    x = torch.randn(4, 1, slices, 16, 16)
    net.double()(x.double()).square().sum().backward()
    want = [p.grad.float() for p in net.parameters()]
    net.float().zero_grad()
    with Precision("bf16", "cpu").autocast():
        out = net(x)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    for (name, p), w in zip(net.named_parameters(), want):
        assert float((p.grad - w).norm() / w.norm()) < 0.1, name
