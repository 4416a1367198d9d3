"""bioimage.io packages: the export passes bioimageio.core's model test offline,
its predictions match ours, and reading a package runs no code from it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml

from napari_b2u.api import ModelFileError, load_model, train

from .utils import TINY, correlated_noise, smooth_image

os.environ.setdefault("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")  # offline


@pytest.fixture(scope="module")
def noisy():
    clean = smooth_image((96, 112))
    return clean + np.random.default_rng(3).normal(0, 20, clean.shape).astype(np.float32)


@pytest.fixture(scope="module")
def package(tmp_path_factory, noisy):
    model = train(noisy, steps=20, time_budget=None, **{**TINY, "depth": 3}, precision="fp32")
    path = tmp_path_factory.mktemp("bio") / "model.zip"
    model.export_bioimageio(path, name="test denoiser", authors=["A. Tester"])
    return model, path


def test_package_passes_the_bioimageio_model_test(package):
    from bioimageio.core import test_model

    _, path = package
    for weights in ("pytorch_state_dict", "torchscript"):
        summary = test_model(path, weight_format=weights)
        assert summary.status == "passed", summary.format()


def test_package_contents(package):
    _, path = package
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    assert {"rdf.yaml", "weights.pt", "weights_torchscript.pt", "test_input.npy",
            "test_output.npy", "cover.png", "README.md", "napari_b2u_model.safetensors"} <= names  # fmt: skip
    assert rdf["format_version"].startswith("0.5")
    assert rdf["license"] == "BSD-3-Clause" and rdf["cite"][0]["url"].endswith("2203.06967")
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert arch["import_from"] == "napari_b2u.core.exported"
    axes = rdf["outputs"][0]["axes"]
    assert [a.get("halo", 0) for a in axes if a["type"] == "space"] == [32, 32]  # depth 3
    assert "fixed_zero_mean_unit_variance" in [p["id"] for p in rdf["inputs"][0]["preprocessing"]]
    assert "scale_linear" in [p["id"] for p in rdf["outputs"][0]["postprocessing"]]


def test_bioimageio_prediction_matches_ours(package, noisy):
    from bioimageio.core import create_prediction_pipeline, load_description, predict
    from bioimageio.core.digest_spec import create_sample_for_model

    model, path = package
    image = noisy[8:88, :112]  # not the test tensor
    ours = model.denoise(image, mode="visible", precision="fp32")
    tolerance = 1e-3 * np.ptp(image)
    # as bioimageio.core predicts by default: the input reflect-padded by the halo,
    # which changes the output within the halo (32 px) of the border only
    theirs = predict(model=str(path), inputs=image[None, None]).members["denoised"].data.values
    assert np.abs(theirs[0, 0] - ours)[32:-32, 32:-32].max() < tolerance
    # without the halo's padding, everywhere
    pipeline = create_prediction_pipeline(load_description(str(path)))
    sample = create_sample_for_model(pipeline.model_descr, inputs=image[None, None])
    whole = pipeline.predict_sample_without_blocking(
        sample, skip_input_padding=True, skip_output_cropping=True
    ).members["denoised"].data.values
    assert np.abs(whole[0, 0] - ours).max() < tolerance


def test_round_trip_export_load_denoise(package, noisy):
    model, path = package
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))
    assert loaded.summary.steps == model.summary.steps


def test_decorrelated_and_3d_models_export(tmp_path):
    from bioimageio.core import test_model

    clean = smooth_image((96, 96))
    x_corr = clean + correlated_noise(clean.shape, sigma=20.0)
    model = train(x_corr, decorrelate="X", steps=3, time_budget=None, **TINY, precision="fp32")
    path = model.export_bioimageio(tmp_path / "pd.zip")
    assert test_model(path).status == "passed"
    np.testing.assert_array_equal(load_model(path).denoise(x_corr), model.denoise(x_corr))
    rng = np.random.default_rng(0)
    volume = (np.stack([clean[:64, :64]] * 20) + rng.normal(0, 20, (20, 64, 64))).astype(np.float32)
    vol = train(volume, axes="ZYX", spatial_dims=3, patch_depth=8, steps=2, time_budget=None,
                **{**TINY, "patch_size": 16}, precision="fp32")  # fmt: skip
    path3 = vol.export_bioimageio(tmp_path / "vol.zip")
    assert test_model(path3).status == "passed"


def _tampered(path, out, rdf_edit=None, weights=None, drop_attachment=True):
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "napari_b2u_model.safetensors" and drop_attachment:
                continue
            if item.filename == "rdf.yaml" and rdf_edit:
                rdf = yaml.safe_load(data)
                rdf_edit(rdf)
                data = yaml.safe_dump(rdf).encode()
            if item.filename == "weights.pt" and weights is not None:
                data = weights
            dst.writestr(item, data)
    return out


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['B2U_PWNED']}",))


def test_a_crafted_pickle_is_refused_and_runs_no_code(package, tmp_path, monkeypatch):
    _, path = package
    marker = tmp_path / "pwned"
    monkeypatch.setenv("B2U_PWNED", str(marker))
    bad = _tampered(path, tmp_path / "bad.zip", weights=pickle.dumps(_Payload()))
    with pytest.raises(ModelFileError, match="not a plain tensor state dict"):
        load_model(bad)
    assert not marker.exists()
    # without the attachment but with honest weights, the state dict still loads
    honest = load_model(_tampered(path, tmp_path / "honest.zip"))
    assert honest.channels == 1


def test_architecture_from_elsewhere_is_refused(package, tmp_path):
    _, path = package

    def elsewhere(rdf):
        rdf["weights"]["pytorch_state_dict"]["architecture"] = {
            "callable": "Evil", "import_from": "os", "kwargs": {}}  # fmt: skip

    bad = _tampered(path, tmp_path / "arch.zip", rdf_edit=elsewhere, drop_attachment=False)
    with pytest.raises(ModelFileError, match="not written by napari-b2u"):
        load_model(bad)
    with pytest.raises(ModelFileError):
        load_model(_tampered(path, tmp_path / "nordf.zip", rdf_edit=lambda r: r.clear()))


def test_without_the_extra_the_error_says_what_to_install(package, tmp_path, monkeypatch):
    model, _ = package
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(ImportError, match=r"pip install \"napari-b2u\[bioimageio\]\""):
        model.export_bioimageio(tmp_path / "x.zip")


def test_cli_export(package, tmp_path):
    model, _ = package
    model_file = tmp_path / "m.safetensors"
    model.save(model_file)
    out = tmp_path / "cli.zip"
    result = subprocess.run(
        [sys.executable, "-m", "napari_b2u", "export", str(model_file), str(out), "--name", "cli model",
         "--author", "Me", "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert load_model(out).summary.steps == model.summary.steps
