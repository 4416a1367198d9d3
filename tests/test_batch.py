"""Batch denoising of files: API, CLI, resume, failures, metadata, distributed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_b2u.api import BatchError, denoise_files, load_model, train
from napari_b2u.engine.images import open_image

from .utils import TINY, smooth_image

TRAIN = {**TINY, "steps": 3, "time_budget": None}


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def folder(tmp_path):
    """Small TIFFs of several kinds, plus an unreadable one."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    stack = (
        (smooth_image((48, 40))[None] + rng.normal(0, 20, (3, 48, 40)))
        .clip(0, 255)
        .astype(np.uint8)
    )
    tifffile.imwrite(
        src / "stack.tif",
        stack,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TYX", "spacing": 0.5, "unit": "um", "finterval": 2.0},
    )
    tifffile.imwrite(src / "plain.tif", (smooth_image((40, 40)) * 100).astype(np.uint16))
    tifffile.imwrite(
        src / "ome.ome.tif",
        stack[:2].astype(np.float32),
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 1.5},
    )
    np.save(src / "array.npy", stack[0].astype(np.int16))
    (src / "broken.tif").write_bytes(b"II*\x00 this is not a tiff")
    return src


def test_self_supervised_batch(folder, tmp_path):
    before = digest(folder)
    out = tmp_path / "out"
    with pytest.raises(BatchError) as info:
        denoise_files(folder, out, progress=False, **TRAIN)
    err = info.value
    assert list(err.failed) == [folder / "broken.tif"] and "broken.tif" in str(err)
    names = sorted(p.name for p in err.done)
    assert names == ["array_b2u.tif", "ome_b2u.tif", "plain_b2u.tif", "stack_b2u.tif"]
    assert digest(folder) == before  # inputs untouched
    assert not [p for p in out.iterdir() if p.suffix == ".part" or p.name.startswith(".")]

    stack = tifffile.TiffFile(out / "stack_b2u.tif")
    assert stack.series[0].shape == (3, 48, 40) and stack.series[0].dtype == np.float32
    assert (
        stack.is_imagej
        and stack.imagej_metadata["spacing"] == 0.5
        and stack.imagej_metadata["unit"] == "um"
    )
    x = stack.pages[0].tags["XResolution"].value
    assert x[0] / x[1] == pytest.approx(5.0)
    stack.close()
    ome = tifffile.TiffFile(out / "ome_b2u.tif")
    assert ome.is_ome and 'PhysicalSizeX="0.3"' in ome.ome_metadata and ome.series[0].axes == "ZYX"
    ome.close()
    assert tifffile.imread(out / "array_b2u.tif").shape == (48, 40)


def test_with_a_model_resume_and_keep_dtype(folder, tmp_path):
    (folder / "broken.tif").unlink()
    model = train(tifffile.imread(folder / "stack.tif"), axes="TYX", **TRAIN)
    path = tmp_path / "m.safetensors"
    model.save(path)
    out = tmp_path / "out"
    first = denoise_files(
        [folder / "stack.tif", str(folder / "*.npy")], out, path, progress=False, dtype="keep"
    )
    assert sorted(p.name for p in first) == ["array_b2u.tif", "stack_b2u.tif"]
    assert tifffile.imread(out / "stack_b2u.tif").dtype == np.uint8
    assert tifffile.imread(out / "array_b2u.tif").dtype == np.int16
    expected = model.denoise(tifffile.imread(folder / "stack.tif"))
    got = tifffile.imread(out / "stack_b2u.tif")
    assert np.abs(got.astype(float) - np.clip(np.rint(expected), 0, 255)).max() <= 1
    mtime = (out / "stack_b2u.tif").stat().st_mtime_ns
    again = denoise_files(folder / "stack.tif", out, load_model(path), progress=False)
    assert again == [out / "stack_b2u.tif"] and (out / "stack_b2u.tif").stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="overwrite"):
        denoise_files(folder / "stack.tif", out, path, progress=False, resume=False)
    denoise_files(folder / "stack.tif", out, path, progress=False, overwrite=True)
    assert (out / "stack_b2u.tif").stat().st_mtime_ns != mtime


def test_unsupported_and_missing_inputs(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(BatchError, match="unsupported file type"):
        denoise_files(tmp_path / "notes.txt", tmp_path / "out", progress=False, **TRAIN)
    with pytest.raises(FileNotFoundError):
        denoise_files(str(tmp_path / "*.tif"), tmp_path / "out", progress=False, **TRAIN)


def test_rgb_png_and_zarr(tmp_path):
    from PIL import Image

    rgb = (np.random.default_rng(0).random((40, 44, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(
        str(tmp_path / "vol.zarr"), mode="w", shape=(2, 40, 40), chunks=(1, 40, 40), dtype="u2"
    )
    z[:] = 500
    out = denoise_files(
        [tmp_path / "photo.png", tmp_path / "vol.zarr"], tmp_path / "out", progress=False, **TRAIN
    )
    assert tifffile.imread(out[0]).shape == (40, 44, 3)
    assert tifffile.imread(out[1]).shape == (2, 40, 40)
    assert open_image(out[0]).axes in ("YXS", "YXC")


def test_cli_end_to_end(folder, tmp_path):
    before = digest(folder)
    out = tmp_path / "out"
    model = tmp_path / "m.safetensors"
    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "napari_b2u", *a], capture_output=True, text=True, timeout=600
        )
    r = run(
        "train",
        str(folder / "stack.tif"),
        str(folder / "array.npy"),
        "--model",
        str(model),
        "--steps",
        "3",
        "--time-budget",
        "0",
        "--depth",
        "2",
        "--features",
        "8",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    assert load_model(model).summary.trained_on["shape"] == [4, 48, 40]
    r = run("denoise", str(folder), "--out", str(out), "--model", str(model), "--dry-run")
    assert r.returncode == 0 and r.stdout.count("write") == 5 and not out.exists()
    r = run(
        "denoise",
        str(folder),
        "--out",
        str(out),
        "--model",
        str(model),
        "--json",
        "-q",
        "--tile",
        "32",
        "--overlap",
        "8",
    )
    assert r.returncode == 1, r.stderr  # broken.tif failed, the rest were written
    summary = json.loads(r.stdout)
    assert len(summary["done"]) == 4 and list(summary["failed"]) == [str(folder / "broken.tif")]
    r = run(
        "denoise",
        str(folder / "stack.tif"),
        "--out",
        str(out),
        "--steps",
        "2",
        "--time-budget",
        "0",
        "--depth",
        "2",
        "--features",
        "8",
        "--json",
        "--suffix",
        "_self",
        "-q",
    )
    assert r.returncode == 0 and json.loads(r.stdout)["done"][0].endswith("stack_self.tif")
    assert digest(folder) == before


def test_distributed_equals_local(folder, tmp_path):
    distributed = pytest.importorskip("distributed")
    (folder / "broken.tif").unlink()
    model = train(tifffile.imread(folder / "stack.tif"), axes="TYX", **TRAIN)
    local = denoise_files(folder, tmp_path / "local", model, progress=False)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            remote = denoise_files(
                folder, tmp_path / "remote", model, progress=False, scheduler=client
            )
    assert sorted(p.name for p in local) == sorted(p.name for p in remote)
    for p in local:
        np.testing.assert_allclose(
            tifffile.imread(p), tifffile.imread(tmp_path / "remote" / p.name), atol=1e-4
        )


def test_interrupt_leaves_no_partial_output(folder, tmp_path, monkeypatch):
    (folder / "broken.tif").unlink()
    model = train(tifffile.imread(folder / "stack.tif"), axes="TYX", **TRAIN)
    calls = {"n": 0}
    original = model.iter_denoise

    def interrupted(*args, **kwargs):
        for item in original(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(model, "iter_denoise", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        denoise_files(folder / "stack.tif", out, model, progress=False)
    assert list(out.iterdir()) == []


def test_train_files_of_different_sizes_trains_one_model_on_all(tmp_path):
    """Files of different plane sizes become a PlaneSet: one model, every
    file's pixels equally likely in a patch, previews of each size."""
    import dask.array as da

    from napari_b2u.api import train_files
    from napari_b2u.engine.data import Planes, PlaneSet
    from napari_b2u.engine.events import Preview
    from napari_b2u.engine.training import train_events

    rng = np.random.default_rng(0)
    small = smooth_image((48, 40)) + rng.normal(0, 20, (48, 40))
    big = np.stack([smooth_image((64, 96), seed=s) for s in (1, 2)]) + rng.normal(0, 20, (2, 64, 96))
    tifffile.imwrite(tmp_path / "small.tif", small.astype(np.float32))
    np.save(tmp_path / "big.npy", big.astype(np.uint16))
    model = train_files([tmp_path / "small.tif", tmp_path / "big.npy"], **TRAIN)
    assert model.summary.trained_on["shapes"] == [[48, 40], [2, 64, 96]]
    assert model.summary.steps == 3 and model.denoise(small).shape == small.shape

    # a lazy part and a numpy part: reads dispatch, sampling follows the pixel counts
    planes = PlaneSet([Planes(small), Planes(da.from_array(big, chunks=(1, 64, 96)))])
    assert planes.n == 3 and (planes.height, planes.width) == (48, 40)
    assert planes.sample_shape(0) == (48, 40) and planes.sample_shape(2) == (64, 96)
    np.testing.assert_allclose(planes.read(2, slice(1, 3), slice(5, 9))[0], big[1, 1:3, 5:9])
    picks = np.bincount([planes.pick(rng) for _ in range(3000)], minlength=3) / 3000
    np.testing.assert_allclose(picks, np.array([1920, 6144, 6144]) / 14208, atol=0.03)
    config = model.config.replace(steps=2)
    seen = {}
    for plane in (0, 2):
        gen = train_events(planes, config=config, preview_plane=plane, preview_interval=0.0)
        event = next(gen)
        while not isinstance(event, Preview):
            event = gen.send(None)
        seen[plane] = event.image.shape
        gen.close()
    assert seen == {0: (48, 40), 2: (64, 96)}

    with pytest.raises(ValueError, match="different channels"):
        PlaneSet([Planes(small), Planes(np.zeros((40, 40, 3)), "YXC")])
