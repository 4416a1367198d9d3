"""The napari-b2u command, run as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import tifffile

from napari_b2u.__main__ import main


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_b2u", *args], capture_output=True, text=True, timeout=600
    )


def test_demo_writes_results_and_reports_psnr(tmp_path):
    out = tmp_path / "demo"
    result = run_cli(
        "demo",
        "--out",
        str(out),
        "--steps",
        "40",
        "--time-budget",
        "0",
        "--features",
        "16",
        "--depth",
        "3",
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"PSNR noisy ([\d.]+) dB -> denoised ([\d.]+) dB", result.stdout)
    assert match, result.stdout
    assert float(match.group(2)) > float(match.group(1)) + 1.0
    assert {p.name for p in out.iterdir()} == {
        "noisy.tif",
        "denoised.tif",
        "side_by_side.png",
        "model.safetensors",
    }
    assert tifffile.imread(out / "denoised.tif").shape == (512, 512)
    assert "training" in result.stderr  # the progress bar

    info = run_cli("info", str(out / "model.safetensors"))
    assert info.returncode == 0, info.stderr
    meta = json.loads(info.stdout)
    assert meta["summary"]["steps"] == 40 and meta["config"]["depth"] == 3


def test_errors_exit_non_zero_with_a_message(tmp_path, caplog):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nope")
    assert main(["info", str(bad)]) == 2
    assert "bad.safetensors" in caplog.text
    assert main(["demo", "--out", str(tmp_path / "d"), "--cell", "1", "-q"]) == 2
    assert "cell must be >= 2" in caplog.text
    result = run_cli("info", str(bad))
    assert result.returncode == 2 and "bad.safetensors" in result.stderr
    assert not np.any([p.suffix == ".part" for p in tmp_path.rglob("*")])


def test_tile_depth_reaches_the_z_tiles_of_volume_models(tmp_path, caplog, monkeypatch):
    from napari_b2u.api import train
    from napari_b2u.engine import inference

    from .test_volumes import TINY3D, blobs, noisy

    volume = noisy(blobs((20, 24, 24)))
    tifffile.imwrite(tmp_path / "vol.tif", volume)
    train(volume, axes="ZYX", steps=2, time_budget=None, decorrelate="off", **TINY3D).save(
        tmp_path / "v.safetensors"
    )
    real = inference.predict
    depths: list[int] = []
    monkeypatch.setattr(
        inference, "predict", lambda net, y, *a: depths.append(y.shape[2]) or real(net, y, *a)
    )
    args = ["denoise", str(tmp_path / "vol.tif"), "--out", str(tmp_path / "out"), "--axes", "ZYX"]
    common = ["--mode", "visible", "--tile-depth", "8", "-q"]
    assert main([*args, "--model", str(tmp_path / "v.safetensors"), *common]) == 0
    assert set(depths) == {8} and (tmp_path / "out" / "vol_b2u.tif").exists()
    # a model of planes has no Z tiles: refused before anything is written
    out2 = str(tmp_path / "out2")
    assert main(["denoise", str(tmp_path / "vol.tif"), "--out", out2, *common]) == 2
    assert "tile_depth sets the Z tiles of volumes" in caplog.text
    assert not (tmp_path / "out2").exists()
