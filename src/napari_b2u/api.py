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

from napari_b2u.batch import BatchError, plan, run_jobs
from napari_b2u.config import MODES, TrainConfig
from napari_b2u.engine import (
    STOP,
    Done,
    Event,
    Model,
    ModelFileError,
    Preview,
    Started,
    Step,
    run_to_end,
    train_events,
)
from napari_b2u.engine import load_model as _load_model

__all__ = [
    "MODES",
    "STOP",
    "Done",
    "Event",
    "Model",
    "ModelFileError",
    "Preview",
    "Started",
    "Step",
    "TrainConfig",
    "BatchError",
    "denoise",
    "denoise_files",
    "load_model",
    "train",
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
        loss became NaN/inf, training stops with a ``RuntimeWarning`` and the
        model keeps the last good weights.
    """
    base = config or (init.config if init is not None else TrainConfig())
    config = base.replace(**overrides) if overrides else base
    model = run_to_end(train_events(image, axes, config, init=init), callback)
    if model.summary.get("stop_reason") == "diverged":
        warnings.warn(model.summary["message"], RuntimeWarning, stacklevel=2)
    return model


def denoise(
    image: Any,
    model: Model | str | os.PathLike,
    axes: str | None = None,
    mode: str | None = None,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    device: str | None = None,
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
        Tile side in pixels (default 512); smaller tiles use less memory.
    tile_overlap : int, optional
        Overlap of neighbouring tiles in pixels (default 64).
    device : str, optional
        Torch device (default: the model's ``config.device``).

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``image``, in its intensity units.
    """
    if not isinstance(model, Model):
        model = load_model(model)
    return model.denoise(
        image, axes=axes, mode=mode, tile_size=tile_size, tile_overlap=tile_overlap, device=device
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
    device: str | None = None,
    config: TrainConfig | None = None,
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
    device : str, optional
        Torch device, as for `Model.denoise`.
    config : TrainConfig, optional
        Configuration of per-file training (default ``TrainConfig()``).
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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(inputs, out, suffix=suffix, overwrite=overwrite, resume=resume)
    if model is not None and not isinstance(model, Model):
        model = load_model(model)
    if "device" in train_overrides and device is None:
        device = train_overrides["device"]  # one device for training and inference
    base = config or TrainConfig()
    config = base.replace(**train_overrides) if train_overrides else base
    bars = _Bars(len(jobs), enabled=progress)
    try:
        return run_jobs(
            jobs,
            model,
            scheduler=scheduler,
            on_done=bars.file_done,
            callback_for=bars.for_job,
            mode=mode,
            axes=axes,
            dtype=dtype,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            device=device,
            config=config,
        )
    finally:
        bars.close()


class _Bars:
    """tqdm bars: files overall, and training/planes of the current file."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.tqdm, self.enabled = tqdm, enabled
        self.files = tqdm(total=total, desc="files", unit="file", disable=not enabled, position=0)
        self.current = None

    def for_job(self, job):
        if not self.enabled:
            return None
        self._close_current()
        self.current = self.tqdm(
            total=100,
            desc=job.input.name,
            leave=False,
            position=1,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
        )

        def callback(kind: str, value: Any) -> None:
            if kind == "train" and isinstance(value, Step):
                self.current.n = round(80 * value.progress)
                self.current.set_postfix_str(f"training, loss {value.loss:.4g}")
            elif kind == "plane":
                done, total = value
                self.current.n = 80 + round(20 * done / total)
                self.current.set_postfix_str(f"denoising plane {done}/{total}")

        return callback

    def file_done(self, job, out, error) -> None:
        self.files.update(1)

    def _close_current(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def close(self) -> None:
        self._close_current()
        self.files.close()
