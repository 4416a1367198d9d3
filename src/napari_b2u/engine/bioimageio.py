"""bioimage.io Model Zoo packages: export, and reading back packages we wrote.

Export follows the bioimage.io model spec 0.5 (``bioimageio.spec``, the
``bioimageio`` extra): the one-pass ``visible`` network
(`napari_b2u.core.exported.VisibleDenoiser`) as ``pytorch_state_dict``
weights and a traced ``torchscript`` copy for Java-based consumers
(deepImageJ, Fiji, QuPath, ilastik, BiaPy run either); normalisation as
``fixed_zero_mean_unit_variance`` pre-processing and ``scale_linear``
post-processing; axes sized on the network's pooling grid with a halo for
tiling; test tensors from the training image; a cover, documentation,
citation and licence. The napari-b2u model file itself travels inside as an
attachment, so `read_package` restores the model exactly, without pickle.

Reading is for packages this project wrote; a zip from elsewhere is
untrusted input. It is refused, running no code, when its architecture is
not ours, and weights are never unpickled: they come from the safetensors
attachment, or, without one, through ``torch.load(weights_only=True)``,
which refuses any pickle that is not plain tensors.
"""

from __future__ import annotations

import getpass
import io
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_b2u.core.exported import VisibleDenoiser
from napari_b2u.engine.atomic import atomic_path
from napari_b2u.engine.modelfile import ModelFileError

if TYPE_CHECKING:
    from napari_b2u.engine.model import Model

#: The file name of the napari-b2u model inside a package.
ATTACHMENT = "napari_b2u_model.safetensors"
ARCHITECTURE = ("napari_b2u.core.exported", "VisibleDenoiser")
#: Largest member read from a package (bytes): a guard against zip bombs.
MAX_MEMBER = 2**31
PAPER = "https://arxiv.org/abs/2203.06967"
INSTALL = (
    "Exporting to bioimage.io needs the bioimage.io libraries: "
    'pip install "napari-b2u[bioimageio]"'
)


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip file (a bioimage.io package)."""
    return Path(path).is_file() and zipfile.is_zipfile(path)


# ---------------------------------------------------------------- export
def export_package(
    model: Model,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    authors: list[dict[str, str]] | list[str] | None = None,
    description: str | None = None,
    image: Any | None = None,
    axes: str | None = None,
    test: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io package (a ``.zip``); see
    `napari_b2u.engine.model.Model.export_bioimageio`."""
    _, save_package = _spec()
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ValueError(f"A bioimage.io package is a .zip file; got {path.name}.")
    sample = _test_input(model, image, axes)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            descr = _describe(model, Path(tmp), sample, name, authors, description)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(
                f"The model cannot be described for bioimage.io: {exc}. (A name needs at "
                "least 5 characters; authors need names.)"
            ) from exc
        if test:
            _check(descr)
        with atomic_path(path) as part:
            save_package(descr, output_path=part.with_suffix(".zip"))
            os.replace(part.with_suffix(".zip"), part)
    return path


def _test_input(model: Model, image: Any | None, axes: str | None) -> np.ndarray:
    """The test input ``(C, [D,] H, W)`` in raw units: a central crop of
    ``image`` (its first plane or volume), else the sample the model kept."""
    if image is not None:
        planes = model.planes(image, axes)
        block = planes.plane(planes.n // 2, cache=False)
    elif model.sample is not None:
        block = model.sample
    else:
        raise ValueError(
            "This model has no sample of its training image (it was saved by an older "
            "napari-b2u); pass image= (and axes=) to take the test tensors from."
        )
    crop = []
    for (axis, grid, _, least), full in zip(geometry(model), block.shape[1:]):
        size = min(full, 32 if axis == "z" else 256 if model.spatial_dims == 2 else 192)
        size -= (size - least) % grid
        if size < least:
            raise ValueError(
                f"The image is too small for a bioimage.io test tensor: {full} pixels along "
                f"{axis.upper()}, where the package's smallest input is {least}."
            )
        start = (full - size) // 2
        crop.append(slice(start, start + size))
    return np.ascontiguousarray(block[(slice(None), *crop)], dtype=np.float32)


def geometry(model: Model) -> list[tuple[str, int, int, int]]:
    """Per spatial axis: ``(id, grid, halo, smallest input)``. Sizes are
    ``smallest + n * grid``. The halo, cropped from each side of a tile's
    output, is the network's reach: beyond ``4 * 2**depth`` pixels in Y and X
    (measured: 16 for depth 2, 64 for depth 4) the output no longer depends
    on the border, so tiles are seamless; in Z ``4 * 2**z_pool`` slices, or
    ``3 * depth + 2`` (one per 3x3x3 convolution) without Z pooling."""
    net = model.net
    out = []
    for axis, grid in zip(["z", "y", "x"][3 - model.spatial_dims :], _grid(model)):
        if axis != "z":
            halo = 4 * 2**net.depth
        else:
            halo = 4 * 2**net.z_pool if net.z_pool else 3 * net.depth + 2
        out.append((axis, grid, halo, grid * -(-(2 * halo + grid) // grid)))
    return out


def _grid(model: Model) -> tuple[int, ...]:
    """The input sizes the exported network takes are multiples of these."""
    sy, sx = model.subsample
    *z, my, mx = model.net.multiples
    return (*z, my * sy, mx * sx)


def _spec():
    """``bioimageio.spec``'s model v0.5 module and package writer (the extra),
    or an ImportError saying what to install."""
    try:
        from bioimageio.spec import save_bioimageio_package
        from bioimageio.spec.model import v0_5
    except ImportError as exc:
        raise ImportError(f"{INSTALL} ({exc})") from exc
    return v0_5, save_bioimageio_package


def _describe(model, tmp: Path, sample, name, authors, description):
    bio, _ = _spec()

    net = exported_network(model).eval()
    test_in = sample[None]  # batch axis
    with torch.no_grad():
        x = torch.from_numpy(_normalize(model, test_in))
        test_out = _denormalize(model, net(x).numpy())
    np.save(tmp / "test_input.npy", test_in)
    np.save(tmp / "test_output.npy", test_out.astype(np.float32))
    weights = tmp / "weights.pt"
    torch.save(net.state_dict(), weights)
    with warnings.catch_warnings():
        # sizes on the pooling grid never pad, so the traced graph holds for all of them
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: Java consumers need it
        traced = torch.jit.trace(net, x)
    traced.save(str(tmp / "weights_torchscript.pt"))
    model.save(tmp / ATTACHMENT)
    _cover(tmp / "cover.png", sample, test_out[0])
    (tmp / "README.md").write_text(_documentation(model, name), encoding="utf-8")

    channels = [f"channel{i}" for i in range(model.channels)]
    in_axes = [bio.BatchAxis(), bio.ChannelAxis(channel_names=channels)]
    out_axes = [bio.BatchAxis(), bio.ChannelAxis(channel_names=channels)]
    for axis, g, h, least in geometry(model):
        in_axes.append(
            bio.SpaceInputAxis(id=bio.AxisId(axis), size=bio.ParameterizedSize(min=least, step=g))
        )
        out_axes.append(
            bio.SpaceOutputAxisWithHalo(
                id=bio.AxisId(axis),
                halo=h,
                size=bio.SizeReference(tensor_id=bio.TensorId("raw"), axis_id=bio.AxisId(axis)),
            )
        )
    mean, std = [float(v) for v in model.mean], [float(v) for v in model.std]
    if model.channels == 1:
        norm = bio.FixedZeroMeanUnitVarianceKwargs(mean=mean[0], std=std[0])
        back = bio.ScaleLinearKwargs(gain=std[0], offset=mean[0])
    else:
        norm = bio.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            mean=mean, std=std, axis=bio.AxisId("channel")
        )
        back = bio.ScaleLinearAlongAxisKwargs(
            gain=std, offset=mean, axis=bio.AxisId("channel")
        )
    version = bio.Version(torch.__version__.split("+")[0])
    s = model.summary
    return bio.ModelDescr(
        name=name or "Blind2Unblind denoiser (napari-b2u)",
        description=description
        or (
            f"Self-supervised Blind2Unblind denoiser trained with napari-b2u on "
            f"{tuple(s.trained_on.get('shape', ()))} {s.trained_on.get('dtype', '')} data "
            f"({s.steps} steps); the one-pass visible output."
        )[:1024],
        authors=[_author(a) for a in (authors or [getpass.getuser()])],
        cite=[
            bio.CiteEntry(
                text="Wang, Liu, Li, Han: Blind2Unblind: Self-Supervised Image Denoising with "
                "Visible Blind Spots. CVPR 2022.",
                url=bio.HttpUrl(PAPER),
            )
        ],
        license=bio.LicenseId("BSD-3-Clause"),
        tags=["denoising", "self-supervised", "blind2unblind", "napari-b2u",
              "3d" if model.spatial_dims == 3 else "2d", "fluorescence-light-microscopy"],  # fmt: skip
        documentation=bio.FileDescr(source=tmp / "README.md"),
        covers=[bio.FileDescr(source=tmp / "cover.png")],
        attachments=[bio.FileDescr(source=tmp / ATTACHMENT)],
        inputs=[
            bio.InputTensorDescr(
                id=bio.TensorId("raw"),
                description="noisy image, in its own intensity units",
                axes=in_axes,
                test_tensor=bio.FileDescr(source=tmp / "test_input.npy"),
                data=bio.IntervalOrRatioDataDescr(type="float32"),
                pad=bio.ReflectPadding(),  # as napari-b2u pads to the pooling grid
                preprocessing=[bio.FixedZeroMeanUnitVarianceDescr(kwargs=norm)],
            )
        ],
        outputs=[
            bio.OutputTensorDescr(
                id=bio.TensorId("denoised"),
                description="denoised image, in the input's intensity units",
                axes=out_axes,
                test_tensor=bio.FileDescr(source=tmp / "test_output.npy"),
                data=bio.IntervalOrRatioDataDescr(type="float32"),
                postprocessing=[bio.ScaleLinearDescr(kwargs=back)],
            )
        ],
        weights=bio.WeightsDescr(
            pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
                source=weights,
                architecture=bio.ArchitectureFromLibraryDescr(
                    import_from=ARCHITECTURE[0],
                    callable=bio.Identifier(ARCHITECTURE[1]),
                    kwargs=architecture_kwargs(model),
                ),
                pytorch_version=version,
            ),
            torchscript=bio.TorchscriptWeightsDescr(
                source=tmp / "weights_torchscript.pt",
                pytorch_version=version,
                parent="pytorch_state_dict",
            ),
        ),
        config={"napari_b2u": {"subsample": list(model.subsample), "summary": s.to_dict()}},
    )


def _author(author: dict[str, str] | str):
    bio, _ = _spec()
    return bio.Author(**author) if isinstance(author, dict) else bio.Author(name=str(author))


def _check(descr) -> None:
    try:
        from bioimageio.core import test_model
    except ImportError as exc:
        raise ImportError(f"{INSTALL} ({exc})") from exc
    summary = test_model(descr)
    if summary.status != "passed":
        raise RuntimeError(f"The exported package failed bioimageio.core's model test:\n{summary}")


def architecture_kwargs(model: Model) -> dict[str, int]:
    net = model.net
    return {
        "in_channels": net.in_channels,
        "features": net.features,
        "depth": net.depth,
        "dims": net.dims,
        "z_pool": net.z_pool,
        "subsample_y": model.subsample[0],
        "subsample_x": model.subsample[1],
    }


def exported_network(model: Model) -> VisibleDenoiser:
    """The model's network as the package runs it (float32, CPU)."""
    net = VisibleDenoiser(**architecture_kwargs(model))
    net.unet.load_state_dict({k: v.detach().cpu() for k, v in model.net.state_dict().items()})
    return net


def _normalize(model: Model, x: np.ndarray) -> np.ndarray:
    shape = (1, -1) + (1,) * model.spatial_dims
    return ((x - model.mean.reshape(shape)) / model.std.reshape(shape)).astype(np.float32)


def _denormalize(model: Model, x: np.ndarray) -> np.ndarray:
    shape = (1, -1) + (1,) * model.spatial_dims
    return x * model.std.reshape(shape) + model.mean.reshape(shape)


def _cover(path: Path, noisy: np.ndarray, denoised: np.ndarray) -> None:
    """Noisy and denoised side by side (the first channel, the middle slice), 8-bit PNG."""
    from PIL import Image

    a, b = noisy[0], denoised[0]
    if a.ndim == 3:
        a, b = a[a.shape[0] // 2], b[b.shape[0] // 2]
    lo, hi = np.percentile(a, [0.5, 99.5])
    scale = 255.0 / max(hi - lo, 1e-6)
    pair = np.concatenate([a, b], axis=1)
    Image.fromarray(np.clip((pair - lo) * scale, 0, 255).astype(np.uint8)).save(path)


def _documentation(model: Model, name: str | None) -> str:
    s = model.summary
    noise = (s.noise or {}).get("summary", "")
    return f"""# {name or "Blind2Unblind denoiser (napari-b2u)"}

A self-supervised denoiser trained with [napari-b2u](https://github.com/napari-b2u/napari-b2u)
by Blind2Unblind (Wang et al., CVPR 2022, {PAPER}) on the noisy images alone.

## What it does

Input: a noisy image in its own intensity units (`raw`, axes
batch, channel, {"z, " if model.spatial_dims == 3 else ""}y, x). Output: the
denoised image in the same units. The network is the model's *visible* output,
one UNet pass; sizes must be multiples of {list(_grid(model))} (pad, then crop).
{"The network sees every " + ", ".join(f"{n}-th {a}" for a, n in zip(("row", "column"), model.subsample) if n > 1) + " (pixel-shuffle sub-sampling for correlated noise); the package does this inside." if model.subsample != (1, 1) else ""}

## Training

- data: {tuple(s.trained_on.get("shape", ()))} {s.trained_on.get("dtype", "")}, axes {s.trained_on.get("axes", "")}
- {s.steps} steps in {s.seconds:.0f} s on {s.device} ({s.precision})
- settings: {model.config.to_dict()}

{("## Noise" + chr(10) + chr(10) + noise) if noise else ""}

## Limits

A self-supervised model learns the noise of the images it was trained on:
apply it to images from the same microscope and settings. Check the residual
(input minus output): it should look like noise, without structure.

## Citation

Zejin Wang, Jiazheng Liu, Guoqing Li, Hua Han. Blind2Unblind: Self-Supervised
Image Denoising with Visible Blind Spots. CVPR 2022.
"""


# ---------------------------------------------------------------- import
def read_package(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model inside a bioimage.io package written by napari-b2u, as the
    ``(tensors, metadata)`` of a model file (`Model.from_tensors` builds it)."""
    import yaml

    from napari_b2u.engine.modelfile import read_model_bytes

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            rdf = yaml.safe_load(_member(zf, "rdf.yaml", path))
            _check_architecture(rdf, path)
            if ATTACHMENT in zf.namelist():
                return read_model_bytes(_member(zf, ATTACHMENT, path), f"{path}:{ATTACHMENT}")
            return _from_state_dict(zf, rdf, path)
    except (zipfile.BadZipFile, yaml.YAMLError, KeyError, TypeError, StopIteration) as exc:
        raise ModelFileError(f"{path} is not a readable bioimage.io package ({exc}).") from exc


def _member(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ModelFileError(f"{path}: the package has no {name}.") from None
    if info.file_size > MAX_MEMBER:
        raise ModelFileError(f"{path}: {name} is implausibly large ({info.file_size} bytes).")
    return zf.read(info)


def _check_architecture(rdf: dict, path: Path) -> None:
    weights = (rdf or {}).get("weights") or {}
    arch = (weights.get("pytorch_state_dict") or {}).get("architecture") or {}
    found = (arch.get("import_from"), arch.get("callable"))
    if found != ARCHITECTURE:
        raise ModelFileError(
            f"{path} was not written by napari-b2u: its architecture is "
            f"{found[0] or arch.get('source')}:{found[1]}, not {ARCHITECTURE[0]}:{ARCHITECTURE[1]}. "
            "napari-b2u only reads the packages it exports (and runs no code from a package); "
            "use bioimageio.core or the software it was made for."
        )


def _from_state_dict(
    zf: zipfile.ZipFile, rdf: dict, path: Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Without our attachment: the state dict (tensors only, never a pickle of
    anything else), the normalisation from the pre-processing, our config;
    returned in the model file's layout."""
    import pickle

    entry = rdf["weights"]["pytorch_state_dict"]
    raw = _member(zf, str(entry["source"]), path)
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: its weights are not a plain tensor state dict and were not loaded "
            f"({str(exc).splitlines()[0][:200]})."
        ) from exc
    kwargs = entry["architecture"]["kwargs"]
    pre = next(
        p["kwargs"]
        for p in rdf["inputs"][0]["preprocessing"]
        if p["id"] == "fixed_zero_mean_unit_variance"
    )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: its weights are not a tensor state dict.")
    tensors = {f"net.{k[len('unet.'):]}": v for k, v in state.items() if k.startswith("unet.")}
    tensors["norm.mean"] = torch.tensor(np.atleast_1d(pre["mean"]), dtype=torch.float32)
    tensors["norm.std"] = torch.tensor(np.atleast_1d(pre["std"]), dtype=torch.float32)
    ours = (rdf.get("config") or {}).get("napari_b2u") or {}
    network = {"in_channels": kwargs["in_channels"], "out_channels": kwargs["in_channels"],
               "features": kwargs["features"], "depth": kwargs["depth"]}  # fmt: skip
    if kwargs.get("dims", 2) == 3:
        network.update(dims=3, z_pool=kwargs.get("z_pool", 0))
    meta = {
        "network": network,
        "config": {"depth": kwargs["depth"], "features": kwargs["features"],
                   "spatial_dims": kwargs.get("dims", 2)},  # fmt: skip
        "subsample": [int(kwargs.get("subsample_y", 1)), int(kwargs.get("subsample_x", 1))],
        "summary": ours.get("summary"),
    }
    return tensors, meta
