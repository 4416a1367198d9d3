"""The public Python API of napari-b2u.

>>> from napari_b2u.api import train, load_model
>>> model = train(noisy_stack, axes="TYX", time_budget=120)    # doctest: +SKIP
>>> clean = model.denoise(noisy_stack, axes="TYX")             # doctest: +SKIP
>>> model.save("stack.safetensors")                            # doctest: +SKIP

Imports no Qt and no napari: usable on servers and in batch jobs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_b2u.batch import (
    BatchError,
    BatchEvent,
    FileDone,
    FilePlanes,
    FileTraining,
    Job,
    expand_inputs,
    plan,
    run_jobs,
    stack_files,
)
from napari_b2u.config import MODES, PRECISIONS, TrainConfig
from napari_b2u.engine import (
    STOP,
    Done,
    Event,
    Model,
    ModelFileError,
    NoiseReport,
    Preview,
    PreviewPlane,
    Started,
    Step,
    StopReason,
    TrainingSummary,
    read_metadata,
    run_to_end,
    train_events,
)
from napari_b2u.engine import load_model as _load_model
from napari_b2u.engine import noise_report as _noise_report
from napari_b2u.engine.images import open_image
from napari_b2u.engine.inference import check_tile_depth
from napari_b2u.progress import BatchBars

__all__ = [
    "MODES",
    "PRECISIONS",
    "STOP",
    "Done",
    "Event",
    "Model",
    "ModelFileError",
    "NoiseReport",
    "Preview",
    "PreviewPlane",
    "Started",
    "Step",
    "StopReason",
    "TrainConfig",
    "TrainingSummary",
    "BatchError",
    "BatchEvent",
    "FileDone",
    "FilePlanes",
    "FileTraining",
    "Job",
    "denoise",
    "denoise_files",
    "load_model",
    "noise_report",
    "plan_files",
    "read_image",
    "read_metadata",
    "train",
    "train_files",
]


def train(
    image: Any,
    axes: str | None = None,
    config: TrainConfig | None = None,
    callback: Callable[[Event], Any] | None = None,
    *,
    init: Model | None = None,
    **overrides: Any,
) -> Model:
    """Train a Blind2Unblind model on a noisy image or stack.

    Parameters
    ----------
    image : array-like
        numpy, dask or zarr array. Only patches are read, so memory-mapped
        and lazy stacks larger than RAM work.
    axes : str, optional
        One letter per dimension: ``"YX"``, ``"TYX"``, ``"ZYX"``, ``"YXC"``
        (RGB or channels), ``"TCYX"``... Default: 2D is ``"YX"``, more
        dimensions are stacks of YX planes. Each plane is one 2D sample;
        channels become the network's channels.
    config : TrainConfig, optional
        All hyper-parameters; default ``TrainConfig()`` (or ``init.config``).
    callback : callable, optional
        Called with every event (`Started`, `Step`,
        `Done`). Return `STOP` from it to end training early and
        keep the model trained so far.
    init : Model, optional
        Continue training this model (see `napari_b2u.engine.train_events`).
    **overrides
        Any `TrainConfig` field, e.g. ``time_budget=60``, ``steps=500``,
        ``cell=2``, ``seed=0``, ``device="cpu"``.

    Returns
    -------
    Model
        The trained model; ``model.summary`` says how training went. If the
        loss became NaN/inf or jumped far above its recent level, training
        stops with a ``RuntimeWarning`` and the model keeps the last good
        weights. When the ``visible`` output came out
        worse than the ``blind`` one (`napari_b2u.engine.noise.visible_check`),
        a ``RuntimeWarning`` says so and the model's ``config.mode`` becomes
        ``"blind"``.
    """
    base = config or (init.config if init is not None else TrainConfig())
    config = base.replace(**overrides) if overrides else base
    model = run_to_end(train_events(image, axes, config, init=init), callback)
    if model.summary.message:  # diverged, or the visible output is worse than the blind one
        warnings.warn(model.summary.message, RuntimeWarning, stacklevel=2)
    return model


def noise_report(
    noisy: Any,
    denoised: Any | None = None,
    axes: str | None = None,
    *,
    handled: tuple[int, int] | None = None,
) -> NoiseReport:
    """Measure an image's noise; given its denoised result, check the residual.

    Before training (``denoised=None``): the correlation of the noise between
    pixels 1 and 2 apart along Y and X, measured in the flattest regions so
    that image structure does not count as correlation; the noise level; and
    which axes are correlated enough to break the blind-spot assumption
    (``decorrelate="auto"`` sub-samples those). After denoising: the
    residual's (``noisy - denoised``) mean, size and correlation, and how much
    image structure it holds (removed detail). Pure numpy, on at most 8
    planes of a stack: fast on large stacks.

    Parameters
    ----------
    noisy : array-like
        The noisy image or stack (numpy, dask, zarr).
    denoised : array-like, optional
        Its denoised result, same shape.
    axes : str, optional
        One letter per dimension, as for `train`.
    handled : tuple of int, optional
        ``Model.subsample`` of the model that made ``denoised``: correlated
        noise that it sub-sampled is not a warning.

    Returns
    -------
    NoiseReport
        ``ok``, ``warnings``, the numbers, and ``summary()``: a paragraph in
        plain words saying what was found and what to do.
    """
    return _noise_report(noisy, denoised, axes, handled=handled)


def denoise(
    image: Any,
    model: Model | str | os.PathLike,
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
    """Denoise ``image`` with a model or a model file.

    Parameters
    ----------
    image : array-like
        numpy, dask or zarr image or stack; it is never modified.
    model : Model or path
        A trained `Model`, or a file written by `Model.save`.
    axes : str, optional
        One letter per dimension, e.g. ``"YX"``, ``"TYX"``, ``"YXC"``
        (default: ``"YX"`` for 2D, leading dimensions are a stack).
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
        ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (default: the model's
        ``config.precision``, resolved for the device).
    ensemble : bool, optional
        Average over the 8 flips and rotations of the image (8x the cost;
        default: the model's ``config.ensemble``).
    tile_depth : int, optional
        Volumes (3D models) only: Z slices per tile, as for `Model.denoise`.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``image``, in its intensity units.
    """
    if not isinstance(model, Model):
        model = load_model(model)
    return model.denoise(
        image,
        axes=axes,
        mode=mode,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        device=device,
        precision=precision,
        ensemble=ensemble,
        tile_depth=tile_depth,
    )


def load_model(path: str | os.PathLike) -> Model:
    """Load a model saved with `Model.save`.

    Parameters
    ----------
    path : path
        A ``.safetensors`` model file.

    Returns
    -------
    Model
        Ready to denoise, or to continue training (``train(..., init=model)``).

    Raises
    ------
    ModelFileError
        When the file is missing, is not safetensors, is truncated, or holds
        tensors that do not match its metadata. Nothing is ever unpickled.
    """
    return _load_model(path)


def denoise_files(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: Model | str | os.PathLike | None = None,
    *,
    mode: str | None = None,
    axes: str | None = None,
    suffix: str = "_b2u",
    overwrite: bool = False,
    resume: bool = True,
    scheduler: Any = None,
    progress: bool = True,
    dtype: str = "float32",
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    tile_depth: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    ensemble: bool | None = None,
    config: TrainConfig | None = None,
    callback: Callable[[BatchEvent], Any] | None = None,
    **train_overrides: Any,
) -> list[Path]:
    """Denoise many image files, writing ``out_dir/<stem><suffix>.tif`` for each.

    Parameters
    ----------
    inputs : path, folder, glob pattern, or a list of them
        TIFF / OME-TIFF (memory-mapped where possible), PNG/JPEG, .npy, .zarr.
    out_dir : path
        Output folder (created if needed). Inputs are never modified.
    model : Model or path, optional
        Apply this model to every file. ``None``: train a model on each file
        itself (self-supervised, the usual Blind2Unblind use), with
        ``config`` and ``train_overrides`` (e.g. ``time_budget=60``).
    mode : {"weighted", "blind", "visible"}, optional
        Output mode (default: the model's).
    axes : str, optional
        Axes of every input; default: read from the TIFF, else guessed.
    suffix : str
        Added to each output's stem.
    overwrite : bool
        Rewrite outputs that exist.
    resume : bool
        Skip outputs that exist (they are complete: outputs are written
        atomically). With both false an existing output is an error.
    scheduler : str or distributed.Client, optional
        A dask.distributed scheduler address or client: files are spread over
        its workers. Default: everything runs here, one file at a time.
    progress : bool
        Show tqdm progress bars (files, and planes of the current file).
    dtype : {"float32", "keep"}
        Output dtype; ``keep`` rounds and clips into the input's dtype.
    tile_size : int, optional
        Tile side in pixels, as for `Model.denoise`.
    tile_overlap : int, optional
        Tile overlap in pixels, as for `Model.denoise`.
    tile_depth : int, optional
        Z slices per tile of volumes, as for `Model.denoise` (3D models only).
    device : str, optional
        Torch device, as for `Model.denoise`.
    precision : str, optional
        Inference precision, as for `Model.denoise`.
    ensemble : bool, optional
        Self-ensemble of 8 flips and rotations, as for `Model.denoise`.
    config : TrainConfig, optional
        Configuration of per-file training (default ``TrainConfig()``).
    callback : callable, optional
        Called with every progress event: `FileTraining` (a training event of
        a file's model), `FilePlanes` (planes denoised) and, per file,
        `FileDone` (its output and the `NoiseReport` on its residual, or its
        error).
    **train_overrides
        `TrainConfig` fields overriding ``config``.

    Returns
    -------
    list of pathlib.Path
        The outputs, complete ones skipped by ``resume`` included.

    Raises
    ------
    BatchError
        After all files were tried, if some failed (``.failed`` says why).
    """
    if model is not None and not isinstance(model, Model):
        model = load_model(model)
    # one device, precision and ensemble setting for training and inference
    device = train_overrides.get("device") if device is None else device
    precision = train_overrides.get("precision") if precision is None else precision
    ensemble = train_overrides.get("ensemble") if ensemble is None else ensemble
    base = config or TrainConfig()
    config = base.replace(**train_overrides) if train_overrides else base
    if model is None:  # refused before any file is trained on or written
        check_tile_depth(tile_depth, config.spatial_dims, "the models trained here denoise")
    else:
        check_tile_depth(tile_depth, model.spatial_dims)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(inputs, out, suffix=suffix, overwrite=overwrite, resume=resume)
    bars = BatchBars(len(jobs), enabled=progress)

    def events(event: BatchEvent) -> None:
        bars(event)
        if callback is not None:
            callback(event)

    try:
        return run_jobs(
            jobs,
            model,
            scheduler=scheduler,
            callback=events,
            mode=mode,
            axes=axes,
            dtype=dtype,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            tile_depth=tile_depth,
            device=device,
            precision=precision,
            ensemble=ensemble,
            config=config,
        )
    finally:
        bars.close()


def read_image(path: str | os.PathLike) -> tuple[Any, str | None]:
    """Open an image file as the batch functions do: lazily where the format
    allows (memory-mapped TIFF and ``.npy``, zarr).

    Parameters
    ----------
    path : path
        TIFF / OME-TIFF, PNG/JPEG/BMP, ``.npy`` or ``.zarr``.

    Returns
    -------
    data, axes
        The (possibly lazy) array and its axes as the file names them
        (``None`` when the format does not say).
    """
    image = open_image(path)
    return image.data, image.axes


def plan_files(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    suffix: str = "_b2u",
    overwrite: bool = False,
    resume: bool = True,
) -> list[Job]:
    """What `denoise_files` would do, without doing it (a dry run).

    Parameters
    ----------
    inputs : path, folder, glob pattern, or a list of them
        As for `denoise_files`.
    out_dir : path
        Output folder (not created).
    suffix : str
        Added to each output's stem.
    overwrite : bool
        Outputs that exist would be rewritten.
    resume : bool
        Outputs that exist would be skipped (``Job.skip``).

    Returns
    -------
    list of Job
        One per input: ``input``, ``output`` and ``skip`` (already complete).

    Raises
    ------
    FileExistsError
        An output exists and neither ``overwrite`` nor ``resume`` is set.
    """
    return plan(inputs, out_dir, suffix=suffix, overwrite=overwrite, resume=resume)


def train_files(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    axes: str | None = None,
    config: TrainConfig | None = None,
    callback: Callable[[Event], Any] | None = None,
    **overrides: Any,
) -> Model:
    """Train one model on the planes of several image files.

    Parameters
    ----------
    inputs : path, folder, glob pattern, or a list of them
        Image files as for `denoise_files`; they must share their channels.
        Files of one plane size are stacked lazily (dask); files of
        different sizes are sampled file by file, each plane weighted by its
        pixel count, with patches no larger than the smallest plane.
    axes : str, optional
        Axes of every input; default: read from each file, else guessed.
    config : TrainConfig, optional
        All hyper-parameters (default ``TrainConfig()``).
    callback : callable, optional
        As for `train`.
    **overrides
        `TrainConfig` fields, as for `train`.

    Returns
    -------
    Model
        The trained model.
    """
    dims = (config or TrainConfig()).replace(**overrides).spatial_dims
    data, data_axes = stack_files(expand_inputs(inputs), axes, dims)
    return train(data, axes=data_axes, config=config, callback=callback, **overrides)
