"""The napari widgets in a real viewer (headless under Xvfb)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import QThreadPool  # noqa: E402

from napari_b2u._widgets import denoise_widget  # noqa: E402
from napari_b2u._widgets.session import SESSION  # noqa: E402
from napari_b2u._widgets.train_widget import RunState  # noqa: E402
from napari_b2u.api import load_model, train  # noqa: E402
from napari_b2u.config import (  # noqa: E402
    TILE_DEPTH,
    TILE_OVERLAP_3D,
    TILE_SIZE,
    TILE_SIZE_3D,
)

from .utils import TINY, psnr, smooth_image  # noqa: E402

pytestmark = pytest.mark.gui


def dock(viewer, name="Train Blind2Unblind"):
    _, widget = viewer.window.add_plugin_dock_widget("napari-b2u", name)
    return widget


def tiny_settings(widget, minutes=0.5, steps=0):
    """Make the network and budget tiny through the widget's own fields."""
    widget.device.value = "cpu"
    form = widget.advanced
    form["depth"].value, form["features"].value = TINY["depth"], 16
    form["patch_size"].value, form["batch_size"].value = 32, 2
    form["steps"].value = steps
    widget.minutes.value = minutes


def wait_idle(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: widget.state is RunState.IDLE, timeout=timeout)


def wait_checked(qtbot, widget, timeout=30_000):
    """Until the Train widget's noise check of the chosen layer has finished."""
    qtbot.waitUntil(lambda: widget._check_worker is None, timeout=timeout)


def noisy_image():
    clean = smooth_image((96, 96))
    return clean, clean + np.random.default_rng(1).normal(0, 25, clean.shape).astype(np.float32)


def test_train_through_the_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    clean, noisy = noisy_image()
    src = viewer.add_image(
        noisy.copy(),
        name="noisy",
        scale=(0.5, 0.25),
        translate=(3, 4),
        axis_labels=("y", "x"),
        metadata={"sample": "A"},
    )
    widget = dock(viewer)
    assert widget.image.value is src and widget.axes.value == "YX"
    assert "one plane" in widget.info.value
    tiny_settings(widget, steps=250, minutes=5)
    widget.train_button.click()
    assert widget.state is RunState.TRAINING
    qtbot.waitUntil(lambda: "noisy [B2U]" in viewer.layers, timeout=240_000)
    wait_idle(qtbot, widget)
    out = viewer.layers["noisy [B2U]"]
    assert out.data.shape == noisy.shape and out.data.dtype == np.float32
    assert psnr(out.data, clean) > psnr(noisy, clean) + 2.0
    np.testing.assert_array_equal(out.scale, src.scale)
    np.testing.assert_array_equal(out.translate, src.translate)
    assert tuple(out.axis_labels) == ("y", "x")
    assert out.metadata["sample"] == "A" and out.metadata["b2u"]["summary"]["steps"] == 250
    np.testing.assert_array_equal(src.data, noisy)  # source untouched
    assert widget.plot.n_points > 0
    assert widget.model is not None and "noisy" in SESSION.models
    assert widget.save_button.isEnabled() and widget.continue_button.isEnabled()


def test_a_long_budget_ends_at_the_step_cap(make_napari_viewer, qtbot, monkeypatch):
    import napari_b2u.engine.training as training

    monkeypatch.setattr(training, "CAP_SCALE", 2.0)  # 96x96: round(2 * 9216**0.25) = 20 steps
    viewer = make_napari_viewer()
    viewer.add_image(noisy_image()[1], name="noisy")
    widget = dock(viewer)
    tiny_settings(widget, minutes=30)
    assert widget.advanced["cap_steps"].value is True  # on by default, shown in Advanced
    widget.train_button.click()
    qtbot.waitUntil(lambda: "noisy [B2U]" in viewer.layers, timeout=120_000)
    wait_idle(qtbot, widget)
    summary = widget.model.summary
    assert summary.stop_reason == "cap" and summary.steps == 20 and summary.seconds < 120
    assert widget.model.config.cap_steps and widget.model.config.time_budget == 1800


def test_a_worse_visible_output_switches_the_result_to_blind(make_napari_viewer, qtbot, monkeypatch):
    import napari_b2u.engine.training as training

    monkeypatch.setattr(training, "visible_check", lambda *a: "The 'visible' output is worse.")
    warned = []
    monkeypatch.setattr("napari_b2u._widgets.train_widget.show_warning", warned.append)
    viewer = make_napari_viewer()
    noisy = noisy_image()[1]
    viewer.add_image(noisy, name="noisy")
    widget = dock(viewer)
    tiny_settings(widget, steps=5)
    assert widget.mode.value == "visible"
    widget.train_button.click()
    qtbot.waitUntil(lambda: "noisy [B2U]" in viewer.layers, timeout=120_000)
    wait_idle(qtbot, widget)
    assert len(warned) == 1 and "now denoises with it" in warned[0]
    assert widget.mode.value == widget.model.config.mode == "blind"
    out = viewer.layers["noisy [B2U]"]
    assert out.metadata["b2u"]["mode"] == "blind"
    np.testing.assert_allclose(out.data, widget.model.denoise(noisy, mode="blind"), atol=1e-3)


def test_stop_is_quick_keeps_the_model_and_continue_resumes(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _, noisy = noisy_image()
    viewer.add_image(np.stack([noisy, noisy[::-1]]), name="stack")
    widget = dock(viewer)
    assert widget.axes.value == "TYX"
    tiny_settings(widget, minutes=10)
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.plot.n_points >= 2, timeout=60_000)
    widget.stop_button.click()
    assert widget.state is RunState.STOPPING
    # the run ends at the next progress report: well before its 10-minute budget
    qtbot.waitUntil(lambda: widget.state is RunState.DENOISING or widget.state is RunState.IDLE)
    wait_idle(qtbot, widget)
    assert widget.model.summary.stop_reason == "stopped"
    assert not widget.model.completed
    steps = widget.model.summary.steps
    assert viewer.layers["stack [B2U]"].data.shape == (2, 96, 96)
    # Continue resumes the same run from where it stopped
    widget.minutes.value = 0.05
    widget.continue_button.click()
    wait_idle(qtbot, widget)
    assert widget.model.summary.steps > steps
    path = tmp_path / "m.safetensors"
    widget.save_model(str(path))
    assert load_model(path).summary.steps == widget.model.summary.steps


def test_preview_layer_updates_for_the_displayed_plane(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.setattr("napari_b2u._widgets.train_widget.PREVIEW_INTERVAL", 0.0)
    viewer = make_napari_viewer()
    stack = np.stack([smooth_image((64, 80), seed=s) for s in range(3)])
    src = viewer.add_image(stack, name="cells", scale=(1, 2, 2))
    widget = dock(viewer)
    viewer.dims.set_current_step(0, 2)
    assert widget._plane == (2, None)
    tiny_settings(widget, steps=20, minutes=5)
    widget.train_button.click()
    qtbot.waitUntil(lambda: "cells [B2U preview]" in viewer.layers, timeout=60_000)
    preview = viewer.layers["cells [B2U preview]"]
    assert preview.data.shape == (64, 80)
    np.testing.assert_array_equal(preview.scale, src.scale[-2:])
    wait_idle(qtbot, widget)


def test_closing_the_viewer_mid_training_leaves_no_thread(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(noisy_image()[1], name="noisy")
    widget = dock(viewer)
    tiny_settings(widget, minutes=10)
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.plot.n_points >= 1, timeout=60_000)
    workers = set(widget._workers)
    assert workers
    viewer.close()
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=10_000)
    # the quit worker's generator is closed, not left to the garbage collector
    # (``workers`` keeps it alive): training's allocator setting is restored
    import napari_b2u.engine._malloc as malloc

    qtbot.waitUntil(lambda: malloc.active() == 0, timeout=10_000)


def test_errors_are_notifications_not_crashes(make_napari_viewer, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_b2u._widgets.train_widget.show_error", shown.append)
    viewer = make_napari_viewer()
    image = noisy_image()[1]
    image[5, 5] = np.nan
    viewer.add_image(image, name="bad")
    widget = dock(viewer)
    tiny_settings(widget, steps=5)
    widget.axes.value = "TYX"
    widget.train_button.click()
    assert shown and "axes" in shown[-1] and widget.state is RunState.IDLE
    widget.axes.value = "YX"
    widget.train_button.click()
    wait_idle(qtbot, widget)
    assert "nan_to_num" in shown[-1]
    viewer.add_points([[1, 1]])
    assert [type(c).__name__ for c in widget.image.choices if c is not None] == ["Image"]
    widget.minutes.value = 1
    widget.advanced["lr_milestones"].value = "not numbers"
    widget.train_button.click()
    assert "could not convert" in shown[-1] or "number" in shown[-1]


def test_apply_a_saved_model_to_a_stack(make_napari_viewer, qtbot, tmp_path):
    import dask.array as da

    clean, noisy = noisy_image()
    model = train(noisy, steps=80, time_budget=None, **{**TINY, "features": 16})
    path = tmp_path / "model.safetensors"
    model.save(path)
    viewer = make_napari_viewer()
    stack = da.from_array(np.stack([noisy, noisy.T]), chunks=(1, 96, 96))
    viewer.add_image(stack, name="lazy", scale=(2, 1, 1))
    widget = dock(viewer, "Denoise with Blind2Unblind model")
    widget.source.value = "model file…"
    widget.file.value = str(path)
    assert "1 channel" in widget.model_info.value and "80 steps" in widget.model_info.value
    widget.tile.value, widget.overlap.value = 64, 16
    widget.device.value = "cpu"
    widget.run_button.click()
    qtbot.waitUntil(lambda: "lazy [B2U]" in viewer.layers, timeout=60_000)
    out = viewer.layers["lazy [B2U]"]
    assert out.data.shape == (2, 96, 96)
    np.testing.assert_array_equal(out.scale, (2, 1, 1))
    assert psnr(out.data[0], clean) > psnr(noisy, clean) + 2.0


def test_session_models_are_offered(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Denoise with Blind2Unblind model")
    SESSION.models.clear()  # other tests' models
    widget.reset_choices()
    assert widget.source.value == "model file…"  # no session model yet
    SESSION.add("from training", train(noisy_image()[1], steps=2, time_budget=None, **TINY))
    assert widget.source.value == "from training"  # the new model is selected
    assert "1 channel(s)" in widget.model_info.value and "2 steps" in widget.model_info.value


def test_sample_data_loads(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-b2u", "noisy_camera")
    viewer.open_sample("napari-b2u", "noisy_stack")
    names = [layer.name for layer in viewer.layers]
    assert {
        "camera (noisy)",
        "camera (clean reference)",
        "cells (noisy)",
        "cells (clean reference)",
    } <= set(names)
    assert viewer.layers["cells (noisy)"].data.shape == (8, 256, 256)


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-b2u")
    names = {w.display_name for w in manifest.contributions.widgets}
    assert {"Train Blind2Unblind", "Denoise with Blind2Unblind model"} <= names
    assert "napari/layers/filter" in manifest.contributions.menus


def test_demo_gui_opens_the_sample_with_the_train_widget(qtbot):
    from napari_b2u._widgets.launch import open_demo_viewer

    viewer = open_demo_viewer(run=False)
    try:
        assert "camera (noisy)" in viewer.layers
        assert any("Train Blind2Unblind" in name for name in viewer.window.dock_widgets)
    finally:
        viewer.close()


def test_a_second_training_is_refused(make_napari_viewer, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_b2u._widgets.train_widget.show_info", shown.append)
    viewer = make_napari_viewer()
    viewer.add_image(noisy_image()[1], name="noisy")
    widget = dock(viewer)
    tiny_settings(widget, minutes=10)
    wait_checked(qtbot, widget)
    widget.train_button.click()
    assert not widget.train_button.isEnabled()
    widget.train()  # programmatic second start
    assert shown and "already running" in shown[-1]
    assert len(widget._workers) == 1
    widget.stop()
    wait_idle(qtbot, widget)


def test_train_widget_without_pyqtgraph_says_what_to_install(make_napari_viewer, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyqtgraph", None)  # import pyqtgraph raises ImportError
    monkeypatch.delitem(sys.modules, "napari_b2u._widgets.loss_plot", raising=False)
    viewer = make_napari_viewer()
    viewer.add_image(noisy_image()[1], name="noisy")
    widget = dock(viewer)
    assert "pip install pyqtgraph" in widget.plot.text()
    assert widget.train_button.isEnabled()


def test_noise_check_decorrelate_verdict_and_residual(make_napari_viewer, qtbot, tmp_path):
    from .utils import correlated_noise, smooth_image

    viewer = make_napari_viewer()
    clean = smooth_image((128, 128))
    viewer.add_image(clean + np.random.default_rng(0).normal(0, 20, clean.shape), name="white")
    widget = dock(viewer)
    wait_checked(qtbot, widget)
    assert widget.noise_info.value.startswith("noise independent")
    viewer.add_image(clean + correlated_noise(clean.shape), name="scan", scale=(0.5, 0.5))
    widget.image.value = viewer.layers["scan"]
    wait_checked(qtbot, widget)
    assert "correlated along X" in widget.noise_info.value and "every 2nd column" in widget.noise_info.value
    assert "Blind2Unblind assumes independent noise" in widget.noise_info.tooltip
    tiny_settings(widget, steps=30, minutes=5)
    widget.precision.value = "fp32"
    assert widget.config().decorrelate == "auto"
    widget.train_button.click()
    qtbot.waitUntil(lambda: "(fp32)" in widget.status.text(), timeout=60_000)
    wait_idle(qtbot, widget)
    assert widget.model.subsample == (1, 2)
    assert widget.verdict.text()[:1] in "✓⚠" and "every 2nd column" in widget.verdict.text()
    assert widget.residual_button.isEnabled()
    widget.residual_button.click()
    residual = viewer.layers["scan [B2U residual]"]
    np.testing.assert_allclose(residual.data, viewer.layers["scan"].data - viewer.layers["scan [B2U]"].data)
    lo, hi = residual.contrast_limits
    assert lo == pytest.approx(-hi) and hi > 0
    np.testing.assert_array_equal(residual.scale, (0.5, 0.5))
    widget.decorrelate.value = "off"
    assert widget.config().decorrelate == "off"
    # export, in a worker
    path = tmp_path / "scan.zip"
    widget.export_bioimageio(str(path))
    qtbot.waitUntil(path.exists, timeout=120_000)
    assert load_model(path).subsample == (1, 2)


def test_loss_plot_shows_a_falling_quantity_and_raw_terms_on_demand(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    plot = widget.plot
    for step, lam in ((1, 2.0), (2, 11.0), (3, 20.0)):
        l_rev = 4.0 * (lam + 1) ** 2 / step  # rises with lambda, falls as the model learns
        plot.append(step, l_rev + 1.0, l_rev, 1.0, lam)
    assert plot.data["progress"] == [4.0, 2.0, pytest.approx(4.0 / 3)]
    assert plot.curves["progress"].isVisible() and not plot.curves["l_rev"].isVisible()
    plot.raw.setChecked(True)
    assert plot.curves["l_rev"].isVisible() and plot.curves["loss"].isVisible()
    assert "falls while the model learns" in plot.explain.text()


def test_a_z_stack_trains_as_volumes(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.setattr("napari_b2u._widgets.train_widget.PREVIEW_INTERVAL", 0.0)
    from .test_volumes import blobs, noisy

    viewer = make_napari_viewer()
    clean = blobs((12, 48, 48))
    viewer.add_image(noisy(clean), name="zstack", axis_labels=("z", "y", "x"), scale=(2, 1, 1))
    widget = dock(viewer)
    assert widget.axes.value == "ZYX" and not widget.volumes.native.isHidden()
    widget.volumes.value = True
    assert "one volume, 12x48x48" in widget.info.value
    viewer.dims.set_current_step(0, 7)
    tiny_settings(widget, steps=6, minutes=5)
    widget.advanced["patch_size"].value = 16
    widget.advanced["patch_depth"].value = 8
    wait_checked(qtbot, widget)
    widget.train_button.click()
    qtbot.waitUntil(lambda: "zstack [B2U preview]" in viewer.layers, timeout=60_000)
    assert viewer.layers["zstack [B2U preview]"].data.shape == (48, 48)
    wait_idle(qtbot, widget)
    assert widget.model.spatial_dims == 3
    assert viewer.layers["zstack [B2U]"].data.shape == clean.shape
    # the Denoise widget applies the 3D model to the stack
    apply = dock(viewer, "Denoise with Blind2Unblind model")
    apply.image.value = viewer.layers["zstack"]
    assert "volumes" in apply.model_info.value
    # a volume model's tiles: 256² in Y/X (not the 512² of planes) and a depth to set
    assert (apply.tile.value, apply.depth.value) == (TILE_SIZE_3D, TILE_DEPTH)
    assert not apply.depth.native.isHidden()
    apply.depth.value = 8
    passed = []
    real = denoise_widget.denoise_and_check
    monkeypatch.setattr(
        denoise_widget, "denoise_and_check", lambda *a: passed.append(a[4:]) or real(*a)
    )
    apply.device.value = "cpu"
    viewer.layers.remove("zstack [B2U]")
    apply.run_button.click()
    qtbot.waitUntil(lambda: "zstack [B2U]" in viewer.layers, timeout=60_000)
    qtbot.waitUntil(lambda: apply.residual_button.isEnabled(), timeout=60_000)
    assert apply.verdict.text()
    tile, overlap, _, _, depth = passed[0]
    assert (tile, overlap, depth) == (TILE_SIZE_3D, TILE_OVERLAP_3D, 8)
    # a model of planes: the 2D defaults, no depth
    SESSION.add("planes", train(noisy(clean)[0], steps=2, time_budget=None, **TINY))
    assert apply.tile.value == TILE_SIZE and apply.depth.native.isHidden()
    # an unlabelled stack reads as a time series for planes, as a z-stack for volumes
    volume_model = next(n for n, m in SESSION.models.items() if m is widget.model)
    apply.image.value = viewer.add_image(noisy(clean), name="unlabelled")
    assert apply.axes.value == "TYX"
    apply.source.value = volume_model
    assert apply.axes.value == "ZYX"


def test_function_commands_run_against_a_real_viewer(make_napari_viewer, tmp_path):
    from npe2 import PluginManager

    viewer = make_napari_viewer()
    clean, noisy = noisy_image()
    layer = viewer.add_image(noisy, name="noisy", scale=(2, 2))
    model = train(noisy, steps=5, time_budget=None, **TINY)
    model.save(tmp_path / "m.safetensors")
    commands = PluginManager.instance().commands
    data, kwargs, kind = commands.execute(
        "napari-b2u.denoise_layer", kwargs={"image": layer, "model_file": tmp_path / "m.safetensors"}
    )
    assert kind == "image" and data.shape == noisy.shape and kwargs["name"] == "noisy [B2U]"
    from napari.layers import Layer

    viewer.add_layer(Layer.create(data, kwargs, kind))
    np.testing.assert_array_equal(viewer.layers["noisy [B2U]"].scale, (2, 2))
    data2, kwargs2, _ = commands.execute(
        "napari-b2u.train_and_denoise", kwargs={"image": layer, "seconds": 1.0}
    )
    assert data2.shape == noisy.shape
    # the function widgets build from their signatures
    _, fw = viewer.window.add_plugin_dock_widget("napari-b2u", "Denoise a layer with a model file (function)")
    assert fw is not None
    # a volume model reads an unlabelled z-stack as ZYX (as a stack of planes it would refuse)
    from .test_volumes import blobs
    from .test_volumes import noisy as noisy_volume

    volume = noisy_volume(blobs((8, 32, 32)))
    tiny3d = {**TINY, "patch_size": 16, "patch_depth": 4}
    model3d = train(volume, axes="ZYX", spatial_dims=3, steps=2, time_budget=None, **tiny3d)
    model3d.save(tmp_path / "v.safetensors")
    stack = viewer.add_image(volume, name="stack")
    data3, _, _ = commands.execute(
        "napari-b2u.denoise_layer", kwargs={"image": stack, "model_file": tmp_path / "v.safetensors"}
    )
    assert data3.shape == volume.shape


def test_advanced_form_round_trips_the_config_and_auto_patch_size(qtbot):
    from napari_b2u._widgets.config_form import ConfigForm
    from napari_b2u.api import TrainConfig

    form = ConfigForm()
    assert form["patch_size"].value == -1 and form["z_pool"].value == -1
    assert TrainConfig(**form.values()) == TrainConfig()  # -1 is "auto": 64 planes, 32 volumes
    form["patch_size"].value = 48
    assert TrainConfig(**form.values()).patch_yx == 48


def test_presets_set_the_lr_schedule_in_a_real_viewer(make_napari_viewer):
    from napari_b2u.api import TrainConfig
    from napari_b2u.core.schedule import PAPER_LR_MILESTONES

    viewer = make_napari_viewer()
    viewer.add_image(smooth_image(), name="img")
    widget = dock(viewer)
    widget.preset.value = "Paper size (GPU)"
    assert TrainConfig(**widget.advanced.values()).lr_milestones == PAPER_LR_MILESTONES
    widget.preset.value = "Fast (CPU)"
    assert TrainConfig(**widget.advanced.values()) == TrainConfig()
    assert widget.advanced["lr_milestones"].value == "0.5, 0.7, 0.9"
    assert viewer.screenshot(canvas_only=False).ndim == 3


SCRIPT_CLOSING_AT_ONCE = """
import numpy as np, napari
viewer = napari.Viewer(show=False)
viewer.add_image(np.random.default_rng(0).random((1024, 1024), dtype=np.float32), name="noisy")
_, widget = viewer.window.add_plugin_dock_widget("napari-b2u", "Train Blind2Unblind")
widget.device.value = "cpu"
widget.train_button.click()
assert widget._workers, "no worker running: the test would prove nothing"
viewer.close()
"""


def test_a_script_that_closes_the_viewer_mid_work_exits_cleanly():
    """No event loop, so napari's own wait-on-quit never runs: workers still
    busy at interpreter exit must be waited for, not left to emit into
    deleted Qt objects."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", SCRIPT_CLOSING_AT_ONCE], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "has been deleted" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
