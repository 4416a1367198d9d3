"""A trained denoiser: network, normalisation, config and training summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_b2u.config import MODES, TrainConfig
from napari_b2u.core.unet import UNet
from napari_b2u.engine.data import Planes
from napari_b2u.engine.device import memory_format, resolve_device, use_all_cores
from napari_b2u.engine.inference import iter_denoised_planes
from napari_b2u.engine.modelfile import ModelFileError, read_model_file, write_model_file
from napari_b2u.engine.precision import resolve_precision
from napari_b2u.engine.summary import TrainingSummary


class Model:
    """A Blind2Unblind model ready to denoise images like the one it was trained on.

    Build one with `napari_b2u.api.train` or `napari_b2u.api.load_model`.

    Attributes
    ----------
    net : UNet
        The network (in the normalised intensity space).
    config : TrainConfig
        The configuration it was trained with.
    mean, std : numpy.ndarray
        Per-channel normalisation, in the training data's intensity units.
    summary : TrainingSummary
        How training went: steps, seconds, final loss, stop reason, the data
        it saw, the noise measured before it, versions.
    optimizer_state : dict or None
        Adam state, kept so that a stopped run can be continued exactly.
    subsample : tuple of int
        ``(sy, sx)``: the pixel-shuffle sub-sampling the network was trained on
        and is applied with (``(1, 1)``: none; see ``TrainConfig.decorrelate``).
    grad_norms : numpy.ndarray or None
        The gradient norms of the last (at most 100) training steps, oldest
        first: a continued run clips gradients against them from its first step.
    sample : numpy.ndarray or None
        A central crop ``(C, [D,] H, W)`` of the training data, in its units
        (at most 256 x 256; volumes 32 x 192 x 192): the test input of exported packages.
    """

    def __init__(
        self,
        net: UNet,
        config: TrainConfig,
        mean: np.ndarray,
        std: np.ndarray,
        summary: TrainingSummary | dict[str, Any] | None = None,
        optimizer_state: dict[str, Any] | None = None,
        subsample: tuple[int, int] = (1, 1),
        sample: np.ndarray | None = None,
        grad_norms: np.ndarray | None = None,
    ) -> None:
        self.net = net.eval()
        self.config = config
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        self.summary = (
            summary if isinstance(summary, TrainingSummary) else TrainingSummary.from_dict(summary)
        )
        self.optimizer_state = optimizer_state
        self.subsample = (int(subsample[0]), int(subsample[1]))
        self.sample = None if sample is None else np.asarray(sample, dtype=np.float32)
        self.grad_norms = (
            None if grad_norms is None else np.asarray(grad_norms, dtype=np.float32).reshape(-1)
        )

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"Model(channels={self.channels}, depth={self.net.depth}, features={self.net.features}, "
            f"cell={self.config.cell}, subsample={self.subsample}, steps={s.steps}, "
            f"seconds={s.seconds:.0f})"
        )

    @property
    def channels(self) -> int:
        """Number of image channels the model takes."""
        return self.net.in_channels

    @property
    def spatial_dims(self) -> int:
        """2: the model denoises planes; 3: volumes."""
        return self.net.dims

    def planes(self, image: Any, axes: str | None = None) -> Planes:
        """``image`` seen as this model sees it: planes, or volumes (which need a Z axis)."""
        try:
            return Planes(image, axes, self.spatial_dims)
        except ValueError as exc:
            if self.spatial_dims == 3 and "Z axis" in str(exc):
                raise ValueError(
                    "This model denoises volumes (it was trained with spatial_dims=3) and the "
                    f"image has no Z axis (axes {Planes(image, axes).axes!r}). Name the z-stack's "
                    "axis Z, or use a model trained on planes."
                ) from exc
            raise

    @property
    def completed(self) -> bool:
        """Whether training ran to its end (not stopped early)."""
        return self.summary.completed

    def denoise(
        self,
        image: Any,
        axes: str | None = None,
        mode: str | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        device: str | None = None,
        precision: str | None = None,
        ensemble: bool | None = None,
        *,
        tile_depth: int | None = None,
    ) -> np.ndarray:
        """Denoise an image or stack.

        Parameters
        ----------
        image : array-like
            numpy, dask or zarr array; see `napari_b2u.api.train` for ``axes``.
        axes : str, optional
            One letter per dimension, e.g. ``"YX"``, ``"TYX"``, ``"YXC"``.
        mode : {"weighted", "blind", "visible"}, optional
            Which output (default: the model's ``config.mode``).
        tile_size : int, optional
            Tile side in Y and X, in pixels (default 512; 256 for volumes);
            smaller tiles use less memory.
        tile_overlap : int, optional
            Overlap of neighbouring tiles in pixels (default 64).
        device : str, optional
            Torch device (default: the model's ``config.device``).
        precision : str, optional
            ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (default: the
            model's ``config.precision``, resolved for the device).
        ensemble : bool, optional
            Average over the 8 flips and rotations of the image (8x the cost;
            default: the model's ``config.ensemble``).
        tile_depth : int, optional
            Volumes (3D models) only: Z slices per tile (default 32, tiles
            overlapping by 16). Deeper tiles redo less overlap and run
            faster, for more memory (64: 1.4x faster on a 64 x 1024² volume).

        Returns
        -------
        numpy.ndarray
            float32 array of ``image.shape``, in the input's intensity units.
        """
        steps = self.denoise_steps(
            image, axes, mode, tile_size, tile_overlap, device, precision, ensemble,
            tile_depth=tile_depth,
        )
        try:
            while True:
                next(steps)
        except StopIteration as finished:
            return finished.value

    def denoise_steps(
        self,
        image: Any,
        axes: str | None = None,
        mode: str | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        device: str | None = None,
        precision: str | None = None,
        ensemble: bool | None = None,
        *,
        tile_depth: int | None = None,
    ) -> Generator[tuple[int, int], None, np.ndarray]:
        """`denoise` as a generator: yields ``(planes done, planes)`` before
        the first plane and after each; returns the denoised array."""
        planes = self.planes(image, axes)
        out = np.empty(planes.shape, dtype=np.float32)
        yield 0, planes.n
        for i, plane in self.iter_denoise(
            planes, mode, tile_size, tile_overlap, device,
            precision=precision, ensemble=ensemble, tile_depth=tile_depth,
        ):
            out[planes.index(i)] = plane
            yield i + 1, planes.n
        return out

    def iter_denoise(
        self,
        planes: Planes,
        mode: str | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        device: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        precision: str | None = None,
        ensemble: bool | None = None,
        tile_depth: int | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(i, denoised plane i)`` one plane (or volume) at a time
        (bounded memory) for ``planes = model.planes(image, axes)``; write
        each with ``out[planes.index(i)] = plane``."""
        mode = mode or self.config.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if planes.spatial_dims != self.spatial_dims:
            raise ValueError(
                f"This model denoises {'volumes' if self.spatial_dims == 3 else 'planes'}; "
                "read the data with model.planes(image, axes)."
            )
        if planes.channels != self.channels:
            raise ValueError(
                f"The model was trained on {self.channels}-channel images but this image has "
                f"{planes.channels} channel(s) (axes {planes.axes!r}). Check the axes, or train "
                "a model on images like this one."
            )
        dev = resolve_device(device or self.config.device)
        if dev.type == "cpu":
            use_all_cores()
        resolved = resolve_precision(precision or self.config.precision, dev, "infer")
        self.net.to(dev, memory_format=memory_format(self.net)).eval()
        yield from iter_denoised_planes(
            planes,
            resolved.for_inference(self.net),
            self.mean,
            self.std,
            mode=mode,
            cell=self.config.cell,
            lam=self.config.lam1,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            tile_depth=tile_depth,
            device=dev,
            precision=resolved,
            subsample=self.subsample,
            ensemble=self.config.ensemble if ensemble is None else ensemble,
            planar=self.spatial_dims == 3 and not self.config.mask_z,
            should_stop=should_stop,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Save as a safetensors file (atomically: a temporary file, then a rename)."""
        write_model_file(path, self.tensors(), self.metadata())

    def export_bioimageio(
        self,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        authors: list[dict[str, str]] | list[str] | None = None,
        description: str | None = None,
        image: Any | None = None,
        axes: str | None = None,
        test: bool = False,
    ) -> Path:
        """Write a bioimage.io Model Zoo package (``.zip``) of this model.

        Fiji/deepImageJ, ilastik, QuPath, BiaPy and ``bioimageio.core`` run it;
        ``load_model`` reads it back. Needs ``pip install "napari-b2u[bioimageio]"``.

        Parameters
        ----------
        path : path
            The ``.zip`` to write (atomically).
        name : str, optional
            The model's name (default: "Blind2Unblind denoiser (napari-b2u)").
        authors : list, optional
            Names, or dicts with ``name`` (and ``affiliation``, ``orcid``,
            ``github_user``); default: the current user.
        description : str, optional
            One paragraph (default: what it was trained on).
        image : array-like, optional
            Take the test tensors from this image instead of the training
            sample the model keeps.
        axes : str, optional
            Axes of ``image``.
        test : bool
            Run ``bioimageio.core``'s model test before writing; raise if it fails.

        Returns
        -------
        pathlib.Path
            The package.
        """
        from napari_b2u.engine.bioimageio import export_package

        return export_package(
            self, path, name=name, authors=authors, description=description, image=image,
            axes=axes, test=test,
        )  # fmt: skip

    # ------------------------------------------------------------ model files
    # Tensor keys: "net.<parameter>", "norm.mean", "norm.std" and
    # "optim.<param id>.<state name>" (Adam state; its param groups are metadata),
    # "train.grad_norms" (the gradient clipper's window).
    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the model: weights, normalisation, optimizer state,
        the gradient clipper's window."""
        tensors = {
            f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()
        }
        tensors["norm.mean"] = torch.from_numpy(self.mean.copy())
        tensors["norm.std"] = torch.from_numpy(self.std.copy())
        if self.sample is not None:
            tensors["sample.input"] = torch.from_numpy(np.ascontiguousarray(self.sample))
        if self.grad_norms is not None:
            tensors["train.grad_norms"] = torch.from_numpy(self.grad_norms.copy())
        if self.optimizer_state is not None:
            for pid, state in self.optimizer_state["state"].items():
                for name, value in state.items():
                    tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        return tensors

    def metadata(self) -> dict[str, Any]:
        """Everything else, JSON-ready: network, config, sub-sampling, summary."""
        net = self.net
        return {
            "format_version": 3 if net.dims == 3 else 1 if self.subsample == (1, 1) else 2,
            "network": {
                "in_channels": net.in_channels,
                "out_channels": net.out_channels,
                "features": net.features,
                "depth": net.depth,
                **({"dims": 3, "z_pool": net.z_pool} if net.dims == 3 else {}),
            },
            "config": self.config.to_dict(),
            "subsample": list(self.subsample),
            "summary": self.summary.to_dict(),
            "optimizer_param_groups": (
                self.optimizer_state["param_groups"] if self.optimizer_state is not None else None
            ),
        }

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any], source: str = "model"
    ) -> Model:
        """Inverse of `tensors` and `metadata`; ``ModelFileError`` (naming
        ``source``) when they do not fit together."""
        try:
            net = UNet(**meta["network"])
            config = TrainConfig.from_dict(meta["config"])
            net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
            mean, std = tensors["norm.mean"].numpy(), tensors["norm.std"].numpy()
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(
                f"{source}: the tensors do not match the network described in its metadata "
                f"({exc}). The file is damaged or was not written by napari-b2u."
            ) from exc
        if mean.shape != (net.in_channels,) or std.shape != (net.in_channels,):
            raise ModelFileError(
                f"{source}: normalisation does not match {net.in_channels} channel(s)."
            )
        subsample = meta.get("subsample", [1, 1])
        if not (
            isinstance(subsample, list)
            and len(subsample) == 2
            and all(isinstance(v, int) and 1 <= v <= 8 for v in subsample)
        ):
            raise ModelFileError(f"{source}: its sub-sampling {subsample!r} is not valid.")
        sample, grad_norms = tensors.get("sample.input"), tensors.get("train.grad_norms")
        return cls(
            net,
            config,
            mean,
            std,
            meta.get("summary"),
            _optimizer_state(meta, tensors),
            subsample=(subsample[0], subsample[1]),
            sample=None if sample is None else sample.numpy(),
            grad_norms=None if grad_norms is None else grad_norms.float().numpy(),
        )


def load_model(path: str | os.PathLike) -> Model:
    """Load a model saved by `Model.save`, or a bioimage.io package (``.zip``)
    exported by `Model.export_bioimageio` (``ModelFileError`` if unusable)."""
    from napari_b2u.engine.bioimageio import is_package, read_package

    tensors, meta = read_package(path) if is_package(path) else read_model_file(path)
    return Model.from_tensors(tensors, meta, source=str(path))


def _optimizer_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict | None:
    groups = meta.get("optimizer_param_groups")
    if not groups:
        return None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": groups}
