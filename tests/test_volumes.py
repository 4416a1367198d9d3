"""Z-stacks as volumes: training, tiled 3D inference, model files, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_b2u.api import TrainConfig, denoise, load_model, train
from napari_b2u.engine import Planes
from napari_b2u.engine.inference import denoise_plane

from .utils import psnr

TINY3D = dict(
    spatial_dims=3, depth=2, features=8, patch_size=16, patch_depth=8, batch_size=2,
    device="cpu", seed=0, precision="fp32",
)  # fmt: skip


def blobs(shape=(16, 32, 32), seed=0) -> np.ndarray:
    """Smooth 3D structure, continuous in Z, 0..255."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    vol = ndi.gaussian_filter(rng.random(shape), 2.0)
    return ((vol - vol.min()) / np.ptp(vol) * 200 + 20).astype(np.float32)


def noisy(clean, sigma=25.0, seed=1):
    return clean + np.random.default_rng(seed).normal(0, sigma, clean.shape).astype(np.float32)


def test_volumes_view():
    stack = np.zeros((3, 5, 2, 8, 9), np.float32)  # T Z C Y X
    vol = Planes(stack, "TZCYX", spatial_dims=3)
    assert vol.n == 3 and vol.spatial_shape == (5, 8, 9) and vol.channels == 2
    assert vol.plane(1).shape == (2, 5, 8, 9)
    assert vol.read(0, slice(1, 3), slice(0, 4), slice(2, 5)).shape == (2, 2, 4, 3)
    block = np.arange(2 * 5 * 8 * 9, dtype=np.float32).reshape(2, 5, 8, 9)
    np.testing.assert_array_equal(vol.to_cyx(vol.from_cyx(block)), block)
    with pytest.raises(ValueError, match="Z axis"):
        Planes(np.zeros((4, 8, 8)), "TYX", spatial_dims=3)


def test_a_short_3d_run_round_trip_and_denoise(tmp_path):
    clean = blobs()
    model = train(noisy(clean), axes="ZYX", steps=4, time_budget=None, **TINY3D)
    assert model.spatial_dims == 3 and model.net.z_pool == 0 and model.summary.steps == 4
    out = model.denoise(noisy(clean), axes="ZYX")
    assert out.shape == clean.shape and out.dtype == np.float32 and np.isfinite(out).all()
    path = tmp_path / "v.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert loaded.spatial_dims == 3
    np.testing.assert_array_equal(denoise(noisy(clean), path, axes="ZYX"), out)
    from napari_b2u.engine import read_metadata

    assert read_metadata(path)["format_version"] == 3


def test_3d_model_errors_are_clear():
    clean = blobs((8, 24, 24))
    model = train(noisy(clean), axes="ZYX", steps=2, time_budget=None, **TINY3D)
    with pytest.raises(ValueError, match="denoises volumes.*no Z axis"):
        model.denoise(noisy(clean), axes="TYX")
    flat = train(noisy(clean)[0], steps=2, time_budget=None, depth=2, features=4, patch_size=16)
    with pytest.raises(ValueError, match="denoises planes"):
        train(noisy(clean), axes="ZYX", init=flat, steps=2, time_budget=None, **TINY3D)
    with pytest.raises(ValueError, match="at least"):
        train(noisy(clean)[:2], axes="ZYX", steps=1, time_budget=None, **TINY3D)
    with pytest.raises(ValueError, match="spatial_dims"):
        TrainConfig(spatial_dims=4)


def test_stacks_of_volumes_and_the_planar_blind_spot():
    clean = np.stack([blobs((8, 24, 24), seed=s) for s in range(2)])  # T Z Y X
    model = train(noisy(clean), axes="TZYX", steps=3, time_budget=None, mask_z=False, **TINY3D)
    assert model.denoise(noisy(clean), axes="TZYX").shape == clean.shape
    for mode in ("blind", "weighted"):
        assert np.isfinite(model.denoise(noisy(clean), axes="TZYX", mode=mode)).all()


def test_3d_tiles_are_seamless():
    from napari_b2u.engine.inference import denoise_tiled

    clean = blobs((40, 72, 72))
    model = train(noisy(clean), axes="ZYX", steps=3, time_budget=None, **{**TINY3D, "z_pool": 1})
    x = (noisy(clean)[None] - 128.0) / 60.0
    common = dict(mode="visible", cell=2, lam=20.0, device=torch.device("cpu"))
    whole = denoise_tiled(model.net, x, tile=(64, 128, 128), overlap=(0, 0, 0), **common)  # one tile
    tiled = denoise_tiled(model.net, x, tile=(32, 48, 48), overlap=(16, 32, 32), **common)
    untiled_error = np.abs(tiled - whole) / whole.std()
    assert untiled_error.mean() < 0.03 and untiled_error.max() < 0.5
    # without overlap, the seams show
    seams = denoise_tiled(model.net, x, tile=(32, 48, 48), overlap=(0, 0, 0), **common)
    assert (np.abs(seams - whole) / whole.std()).mean() > 2 * untiled_error.mean()


def test_3d_out_of_memory_retries_with_smaller_tiles(monkeypatch):
    from napari_b2u.engine import inference

    clean = blobs((16, 32, 32))
    model = train(noisy(clean), axes="ZYX", steps=2, time_budget=None, **TINY3D)
    real = inference.predict

    def limited(net, y, *args):
        if y[0, 0].numel() > 8 * 32 * 32:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return real(net, y, *args)

    monkeypatch.setattr(inference, "predict", limited)
    x = noisy(clean)[None] / 255.0
    with pytest.warns(RuntimeWarning, match="Out of memory"):
        out = denoise_plane(model.net, x, mode="visible", cell=2, lam=20, device=torch.device("cpu"))
    assert out.shape == x.shape and np.isfinite(out).all()


@pytest.mark.slow
def test_volumes_beat_planes_on_structure_continuous_in_z():
    clean = blobs((16, 48, 48), seed=3)
    data = noisy(clean, sigma=40)
    settings = dict(steps=120, time_budget=None, depth=2, features=8, patch_size=16,
                    batch_size=2, device="cpu", seed=0, precision="fp32")  # fmt: skip
    planes = train(data, axes="ZYX", **settings)
    volumes = train(data, axes="ZYX", spatial_dims=3, patch_depth=8, mask_z=False, **settings)
    assert psnr(volumes.denoise(data, axes="ZYX"), clean) > psnr(planes.denoise(data, axes="ZYX"), clean)


def test_volume_defaults_follow_the_kind_of_data(tmp_path):
    """Volumes default to 8 x 32 x 32 patches and the planar blind spot (5
    passes a step, measured best per second); planes keep 64 x 64; an explicit
    patch size wins and survives the model file."""
    assert TrainConfig().patch_yx == 64 and TrainConfig(spatial_dims=3).patch_yx == 32
    assert TrainConfig(spatial_dims=3, patch_size=48).patch_yx == 48
    vol = TrainConfig(spatial_dims=3)
    assert (vol.patch_depth, vol.mask_z, vol.net_depth) == (8, False, 3)
    assert TrainConfig().net_depth == 4 and TrainConfig(spatial_dims=3, depth=5).net_depth == 5
    model = train(noisy(blobs()), axes="ZYX", spatial_dims=3, steps=1, time_budget=None, device="cpu")
    assert (model.net.depth, model.net.z_pool) == (3, 0)
    assert train(noisy(blobs())[0], steps=1, time_budget=None, device="cpu").net.depth == 4
    assert TrainConfig.from_dict(vol.to_dict()) == vol
    with pytest.raises(ValueError, match="patch_size"):
        TrainConfig(patch_size=2)
    from napari_b2u.engine.data import patch_shape

    shape = patch_shape(Planes(noisy(blobs()), "ZYX", spatial_dims=3), vol.patch_yx, (1, 4, 4), (1, 1), 8)
    assert tuple(shape) == (8, 32, 32)


def test_a_worse_visible_output_of_a_volume_model_switches_it_to_blind(monkeypatch):
    import napari_b2u.engine.training as training

    seen = []
    monkeypatch.setattr(training, "visible_check", lambda *a: seen.append(a) or "use blind")
    with pytest.warns(RuntimeWarning, match="use blind"):
        model = train(noisy(blobs()), axes="ZYX", steps=2, time_budget=None, **TINY3D)
    (volume, visible, blind), = seen
    assert volume.shape == visible.shape == blind.shape == model.sample.shape and volume.ndim == 4
    assert not np.array_equal(visible, blind) and model.config.mode == "blind"


def test_tile_depth_sets_the_z_tiles_of_volumes(monkeypatch):
    from napari_b2u.engine import inference

    clean = blobs((40, 24, 24))
    model = train(
        noisy(clean), axes="ZYX", steps=2, time_budget=None, decorrelate="off", **TINY3D
    )  # one network pass per tile
    real = inference.predict
    depths: list[int] = []

    def recording(net, y, *args):
        depths.append(y.shape[2])
        return real(net, y, *args)

    monkeypatch.setattr(inference, "predict", recording)
    default = model.denoise(noisy(clean), axes="ZYX", mode="visible")
    assert max(depths) == 32 and len(depths) == 2  # TILE_DEPTH slices, overlapping by 16
    depths.clear()
    deep = model.denoise(noisy(clean), axes="ZYX", mode="visible", tile_depth=64)
    assert depths == [40]  # the whole volume in one tile
    depths.clear()
    shallow = denoise(noisy(clean), model, axes="ZYX", mode="visible", tile_depth=16)
    assert depths == [16] * 4  # 16 slices overlapping by 8
    for out in (deep, shallow):
        assert (np.abs(out - default) / default.std()).mean() < 0.05
    with pytest.raises(ValueError, match="tile_depth must be at least 1, got -1"):
        model.denoise(noisy(clean), axes="ZYX", tile_depth=-1)


def test_tile_depth_is_refused_for_plane_models(tmp_path):
    from napari_b2u.api import denoise_files

    image = noisy(blobs((8, 24, 24)))[0]
    flat = train(image, steps=2, time_budget=None, depth=2, features=4, patch_size=16, device="cpu")
    with pytest.raises(ValueError, match="tile_depth sets the Z tiles of volumes.*planes"):
        flat.denoise(image, tile_depth=16)
    np.save(tmp_path / "a.npy", image)
    with pytest.raises(ValueError, match="this model denoises planes"):
        denoise_files(tmp_path / "a.npy", tmp_path / "out", flat, tile_depth=16, progress=False)
    with pytest.raises(ValueError, match="spatial_dims=3"):
        denoise_files(tmp_path / "a.npy", tmp_path / "out", tile_depth=16, progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was written
