"""The napari widgets in a real viewer (headless under Xvfb)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import QThreadPool  # noqa: E402

from napari_b2u._widgets.session import SESSION  # noqa: E402
from napari_b2u.api import load_model, train  # noqa: E402

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
    qtbot.waitUntil(lambda: widget.state == "idle", timeout=timeout)


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
    assert widget.state == "training"
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


def test_stop_is_quick_keeps_the_model_and_continue_resumes(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _, noisy = noisy_image()
    viewer.add_image(np.stack([noisy, noisy[::-1]]), name="stack")
    widget = dock(viewer)
    assert widget.axes.value == "TYX"
    tiny_settings(widget, minutes=10)
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.plot.n_points >= 2, timeout=60_000)
    t0 = time.perf_counter()
    widget.stop_button.click()
    qtbot.waitUntil(
        lambda: widget.state != "training" and widget.state != "stopping", timeout=5_000
    )
    assert time.perf_counter() - t0 < 1.0  # training had stopped within a second
    wait_idle(qtbot, widget)
    assert not widget.model.completed
    steps = widget.model.summary["steps"]
    assert viewer.layers["stack [B2U]"].data.shape == (2, 96, 96)
    # Continue resumes the same run from where it stopped
    widget.minutes.value = 0.05
    widget.continue_button.click()
    wait_idle(qtbot, widget)
    assert widget.model.summary["steps"] > steps
    path = tmp_path / "m.safetensors"
    widget.save_model(str(path))
    assert load_model(path).summary["steps"] == widget.model.summary["steps"]


def test_preview_layer_updates_for_the_displayed_plane(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.setattr("napari_b2u._widgets.train_widget.PREVIEW_INTERVAL", 0.0)
    viewer = make_napari_viewer()
    stack = np.stack([smooth_image((64, 80), seed=s) for s in range(3)])
    src = viewer.add_image(stack, name="cells", scale=(1, 2, 2))
    widget = dock(viewer)
    viewer.dims.set_current_step(0, 2)
    assert widget._plane == 2
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
    assert shown and "axes" in shown[-1] and widget.state == "idle"
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
    SESSION.add("from training", train(noisy_image()[1], steps=2, time_budget=None, **TINY))
    assert (
        widget.source.value == "from training" and "model 1 channel" not in widget.model_info.value
    )
    assert "1 channel(s)" in widget.model_info.value


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
