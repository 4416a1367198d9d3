"""The noise report and decorrelation: known answers on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_b2u.api import TrainConfig, load_model, noise_report, train
from napari_b2u.engine.inference import denoise_subsampled
from napari_b2u.engine.noise import CORRELATED

from .utils import TINY, correlated_noise, psnr, smooth_image, textured_image


def white(shape, sigma=25.0, seed=1):
    return np.random.default_rng(seed).normal(0.0, sigma, shape).astype(np.float32)


def naive_lag1(image, axis):
    """What a 5-px high-pass correlation reads, for comparison."""
    r = image - ndi.uniform_filter(image.astype(np.float64), 5)
    a = np.moveaxis(r, axis, -1)
    return float((a[..., 1:] * a[..., :-1]).mean() / (a * a).mean())


def test_image_structure_does_not_count_as_correlation():
    clean = textured_image((256, 256))
    noisy = clean + white(clean.shape, sigma=10.0)
    report = noise_report(noisy)
    assert report.correlated_axes == "" and report.subsample == (1, 1)
    for axis in ("Y", "X"):
        assert abs(report.autocorrelation[axis][0]) < 0.08
    # a plain high-pass reads the fine structure as correlation
    assert naive_lag1(noisy, 0) > 0.15 and naive_lag1(noisy, 1) > 0.15
    assert report.noise_std == pytest.approx(10.0, rel=0.1)
    assert report.ok and "independent" in report.summary()


@pytest.mark.parametrize(("axis", "name", "subsample"), [(-1, "X", (1, 2)), (-2, "Y", (2, 1))])
def test_noise_correlated_along_one_axis_is_found(axis, name, subsample):
    clean = textured_image((256, 256))
    report = noise_report(clean + correlated_noise(clean.shape, axis=axis))
    assert report.correlated_axes == name and report.subsample == subsample
    assert report.autocorrelation[name][0] == pytest.approx(0.5, abs=0.08)
    other = "Y" if name == "X" else "X"
    assert abs(report.autocorrelation[other][0]) < CORRELATED
    assert not report.ok and "decorrelate" in report.warnings[0]
    assert "every 2nd" in report.summary()
    # once a model handled it, the same noise is no longer a warning
    assert noise_report(clean + correlated_noise(clean.shape, axis=axis), handled=subsample).ok


def test_blurred_clean_image_as_denoised_warns_of_removed_structure():
    clean = textured_image((128, 128))
    noisy = clean + white(clean.shape)
    blurred = noise_report(noisy, ndi.gaussian_filter(clean, 3.0))
    assert not blurred.ok and blurred.residual_structure > 0.1
    assert any("structure" in w for w in blurred.warnings)
    exact = noise_report(noisy, clean)
    assert exact.ok and exact.residual_structure < 0.005
    assert exact.residual_std_ratio == pytest.approx(1.0, abs=0.15)
    assert abs(exact.residual_mean) < 0.1
    assert "looks like noise" in exact.summary()


def test_a_result_outside_the_noisy_range_is_reported():
    clean = textured_image((128, 128))
    noisy = clean + white(clean.shape)
    assert noise_report(noisy, clean).out_of_range == 0.0
    broken = clean.copy()
    broken[40:48, 40:60] = noisy.max() + 200  # a band a failed network can paint
    report = noise_report(noisy, broken)
    assert report.out_of_range == pytest.approx(160 / clean.size)
    assert not report.ok and any("outside the noisy image's range" in w for w in report.warnings)
    assert report.to_dict()["out_of_range"] == pytest.approx(160 / clean.size, rel=1e-2)
    nan = clean.copy()
    nan[:4, :4] = np.nan  # not a number is out of range too
    assert noise_report(noisy, nan).out_of_range == pytest.approx(16 / clean.size)
    # per channel: a dim channel painted up to a bright one's level
    rgb = np.stack([clean, 0.1 * clean + 100], axis=-1)
    noisy_rgb = rgb + white(rgb.shape)
    painted = rgb.copy()
    painted[40:48, 40:60, 1] = clean.max()
    assert noise_report(noisy_rgb, rgb, axes="YXC").out_of_range == 0.0
    assert noise_report(noisy_rgb, painted, axes="YXC").out_of_range > 0


def test_keeping_the_noise_and_shifting_the_intensity_are_reported():
    clean = smooth_image((96, 96))
    noisy = clean + white(clean.shape)
    half = noise_report(noisy, 0.5 * noisy + 0.5 * clean)
    assert any("still in the result" in w for w in half.warnings)
    darker = noise_report(noisy, clean - 20)
    assert any("brighter" in w or "darker" in w for w in darker.warnings)


def test_report_on_stacks_channels_and_odd_input():
    stack = np.stack([textured_image((64, 64), seed=s) for s in range(20)])
    stack = stack + white(stack.shape)
    report = noise_report(stack, axes="TYX")
    assert report.planes == 8 and report.blocks > 0
    rgb = np.stack([textured_image((64, 64), seed=s) for s in range(3)], axis=-1)
    assert noise_report(rgb + white(rgb.shape), axes="YXC").blocks > 0
    flat = noise_report(np.full((40, 40), 7.0))  # nothing to measure
    assert flat.blocks == 0 and "too small or too uniform" in flat.summary()
    with pytest.raises(ValueError, match="shape"):
        noise_report(np.zeros((32, 32)), np.zeros((32, 33)))
    d = report.to_dict()
    assert set(d) >= {"ok", "warnings", "autocorrelation", "noise_std", "summary"}


def test_subsampled_denoising_reassembles_every_pixel(monkeypatch):
    calls = []

    def identity(net, plane, **kwargs):
        calls.append(plane.shape)
        return plane.copy()

    monkeypatch.setattr("napari_b2u.engine.inference.denoise_plane", identity)
    plane = np.random.default_rng(0).random((2, 37, 41)).astype(np.float32)
    for sub in ((1, 2), (2, 1), (2, 2), (3, 1)):
        calls.clear()
        np.testing.assert_array_equal(denoise_subsampled(None, plane, sub, mode="visible"), plane)
        assert len(calls) == sub[0] * sub[1]
    assert calls[0] == (2, 13, 41) and calls[-1] == (2, 12, 41)  # 37 rows: 13 + 12 + 12


def test_auto_leaves_white_noise_alone():
    clean = textured_image((96, 96))
    model = train(clean + white(clean.shape), steps=3, time_budget=None, **TINY)
    assert model.subsample == (1, 1)
    assert model.summary.noise is not None and model.summary.noise["correlated_axes"] == ""


@pytest.mark.slow
def test_auto_handles_correlated_noise_and_beats_off(tmp_path):
    clean = smooth_image((128, 128))
    noisy = clean + correlated_noise(clean.shape, sigma=30.0)
    settings = dict(steps=300, time_budget=None, **{**TINY, "features": 16, "patch_size": 32})
    auto = train(noisy, **settings)
    off = train(noisy, decorrelate="off", **settings)
    assert auto.subsample == (1, 2) and off.subsample == (1, 1)
    gain = psnr(auto.denoise(noisy), clean) - psnr(off.denoise(noisy), clean)
    assert gain > 1.0, gain
    path = tmp_path / "m.safetensors"
    auto.save(path)
    loaded = load_model(path)
    assert loaded.subsample == (1, 2)
    np.testing.assert_array_equal(loaded.denoise(noisy), auto.denoise(noisy))


def test_decorrelate_values():
    assert TrainConfig(decorrelate="xy").decorrelate == "YX"
    assert TrainConfig(decorrelate="OFF").decorrelate == "off"
    with pytest.raises(ValueError, match="decorrelate"):
        TrainConfig(decorrelate="z")
    image = textured_image((64, 64))
    model = train(image + white(image.shape), decorrelate="Y", steps=2, time_budget=None, **TINY)
    assert model.subsample == (2, 1) and model.summary.noise is None
    with pytest.raises(ValueError, match="sub-sampling"):
        train(image, init=model, decorrelate="X", steps=2, time_budget=None)
    with pytest.raises(ValueError, match="decorrelate='off'"):
        train(white((16, 14)), decorrelate="X", steps=1, time_budget=None, **TINY)
