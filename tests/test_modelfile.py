"""Model files: round trip, atomic writes, and every way a file can be wrong."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_b2u.api import ModelFileError, load_model, train
from napari_b2u.engine import read_metadata
from napari_b2u.engine.modelfile import FORMAT_VERSION, META_KEY

from .utils import TINY, smooth_image


def test_round_trip_is_bit_exact(trained_model, tmp_path, noisy_pair):
    path = tmp_path / "m.safetensors"
    trained_model.save(path)
    loaded = load_model(path)
    _, noisy = noisy_pair
    for mode in ("weighted", "blind", "visible"):
        assert np.array_equal(
            loaded.denoise(noisy, mode=mode), trained_model.denoise(noisy, mode=mode)
        )
    assert loaded.config == trained_model.config
    assert loaded.summary.steps == trained_model.summary.steps
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left
    meta = read_metadata(path)
    assert meta["format_version"] == 1  # the lowest format that describes it
    assert {"steps", "seconds", "final_loss", "versions"} <= set(meta["summary"])
    assert meta["summary"]["versions"]["torch"] == torch.__version__


def test_saved_optimizer_state_lets_a_stopped_run_continue(tmp_path, monkeypatch):
    from napari_b2u.api import STOP, Step

    monkeypatch.setattr("napari_b2u.engine.training.REPORT_INTERVAL", 0.0)
    image = smooth_image((40, 40))
    stopped = train(
        image,
        steps=8,
        time_budget=None,
        callback=lambda e: STOP if isinstance(e, Step) and e.step >= 3 else None,
        **TINY,
    )
    stopped.save(tmp_path / "s.safetensors")
    loaded = load_model(tmp_path / "s.safetensors")
    assert loaded.optimizer_state is not None and not loaded.completed
    a = train(image, init=stopped)
    b = train(image, init=loaded)
    assert a.summary.steps == b.summary.steps == 8
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        torch.testing.assert_close(pa, pb)


def test_save_is_atomic_when_writing_fails(trained_model, tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"previous")

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        trained_model.save(path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_save_into_missing_folder_says_so(trained_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trained_model.save(tmp_path / "nope" / "m.safetensors")


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="No model file"):
        load_model(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("content", [b"", b"hello, not a model", b"\x00" * 7])
def test_not_safetensors(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        load_model(path)


def test_truncated_file(trained_model, tmp_path):
    path = tmp_path / "m.safetensors"
    trained_model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="m.safetensors"):
        load_model(path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ModelFileError, match="evil.safetensors"):
        load_model(path)
    assert not marker.exists()
    # the same payload through torch.save's zip format
    torch.save({"x": _Exploit(str(marker))}, path)
    with pytest.raises(ModelFileError):
        load_model(path)
    assert not marker.exists()


def test_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(ModelFileError, match="not a napari-b2u model"):
        load_model(path)


def _rewrite_meta(src, dst, change):
    data = src.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"][META_KEY])
    change(meta, header)
    header["__metadata__"][META_KEY] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def test_newer_format_version_asks_to_upgrade(trained_model, tmp_path):
    trained_model.save(tmp_path / "m.safetensors")
    _rewrite_meta(
        tmp_path / "m.safetensors",
        tmp_path / "new.safetensors",
        lambda meta, header: meta.update(format_version=FORMAT_VERSION + 1),
    )
    with pytest.raises(ModelFileError, match="newer napari-b2u"):
        load_model(tmp_path / "new.safetensors")


def test_wrong_tensors_are_reported(trained_model, tmp_path):
    trained_model.save(tmp_path / "m.safetensors")
    _rewrite_meta(
        tmp_path / "m.safetensors",
        tmp_path / "w.safetensors",
        lambda meta, header: meta["network"].update(features=16),
    )
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(tmp_path / "w.safetensors")
