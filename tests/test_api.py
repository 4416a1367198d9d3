"""The public API as a user meets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_b2u import api
from napari_b2u.api import Model, TrainConfig, denoise, train

from .utils import SHARED_DATA, TINY, psnr


def test_public_names():
    for name in ("TrainConfig", "Model", "train", "denoise", "load_model"):
        assert getattr(api, name).__doc__, name


def test_api_imports_no_qt_and_no_napari():
    code = (
        "import sys, napari_b2u.api\n"
        "bad = [m for m in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'pyqtgraph')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_layers_are_kept():
    import importlinter  # noqa: F401  (the testing extra has it: a missing one is a failure)

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(["lint-imports"], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycles():
    """No module imports one that imports it back, lazily or not."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"
    spec = importlib.util.spec_from_file_location("import_graph", path)
    graph_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph_module)
    graph = graph_module.module_graph()
    assert "napari_b2u.engine.model" in graph["napari_b2u.engine.training"]  # it sees imports
    assert graph_module.cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]  # and cycles
    assert graph_module.cycles(graph) == []


def test_config_overrides_and_errors():
    config = TrainConfig().replace(steps=5, cell=4)
    assert config.steps == 5 and config.cell == 4
    with pytest.raises(TypeError, match="Unknown TrainConfig field.*valid fields"):
        TrainConfig().replace(epochs=3)
    with pytest.raises(ValueError, match="steps or time_budget"):
        TrainConfig(steps=None, time_budget=None)
    with pytest.raises(ValueError, match="cell must be >= 2"):
        TrainConfig(cell=1)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_denoise_function_and_model_file(trained_model, tmp_path, noisy_pair):
    _, noisy = noisy_pair
    path = tmp_path / "m.safetensors"
    trained_model.save(path)
    np.testing.assert_array_equal(denoise(noisy, path), trained_model.denoise(noisy))
    np.testing.assert_array_equal(
        denoise(noisy, trained_model, mode="blind"), trained_model.denoise(noisy, mode="blind")
    )


def test_input_is_never_modified(noisy_pair):
    _, noisy = noisy_pair
    before = noisy.copy()
    model = train(noisy, steps=3, time_budget=None, **TINY)
    model.denoise(noisy)
    np.testing.assert_array_equal(noisy, before)


def test_channel_mismatch_is_explained(trained_model):
    with pytest.raises(ValueError, match="1-channel.*3 channel"):
        trained_model.denoise(np.zeros((32, 32, 3), np.float32), axes="YXC")


def test_callback_sees_events_and_can_stop():
    seen = []

    def callback(event):
        seen.append(type(event).__name__)
        return api.STOP if isinstance(event, api.Step) else None

    model = train(
        np.random.default_rng(0).random((48, 48)).astype(np.float32),
        steps=10_000,
        time_budget=None,
        callback=callback,
        **TINY,
    )
    assert seen[0] == "Started" and seen[-1] == "Done" and "Step" in seen
    assert isinstance(model, Model) and model.summary.stop_reason == "stopped"


@pytest.mark.slow
def test_psnr_gain_on_shared_microscopy_data():
    pytest.importorskip("PIL")
    from PIL import Image

    noisy_path = SHARED_DATA / "fmd" / "noisy" / "confocal_fish_3.png"
    if not noisy_path.exists():
        pytest.skip(f"shared data not present ({noisy_path})")
    noisy = np.asarray(Image.open(noisy_path)).astype(np.float32)[:256, :256]
    clean = np.asarray(Image.open(SHARED_DATA / "fmd" / "gt" / noisy_path.name)).astype(np.float32)[
        :256, :256
    ]
    model = train(noisy, steps=200, time_budget=None, **{**TINY, "features": 16, "patch_size": 64})
    gain = psnr(model.denoise(noisy), clean) - psnr(noisy, clean)
    assert gain > 1.0, gain
