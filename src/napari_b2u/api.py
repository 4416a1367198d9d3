"""The public Python API of napari-b2u.

>>> from napari_b2u.api import train, load_model
>>> model = train(noisy_stack, axes="TYX", time_budget=120)    # doctest: +SKIP
>>> clean = model.denoise(noisy_stack, axes="TYX")             # doctest: +SKIP
>>> model.save("stack.safetensors")                            # doctest: +SKIP

Imports no Qt and no napari: usable on servers and in batch jobs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

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
    TrainingDiverged,
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
    "TrainingDiverged",
    "denoise",
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
        Called with every event (:class:`Started`, :class:`Step`,
        :class:`Done`). Return :data:`STOP` from it to end training early and
        keep the model trained so far.
    init : Model, optional
        Continue training this model (see :func:`napari_b2u.engine.train_events`).
    **overrides
        Any :class:`TrainConfig` field, e.g. ``time_budget=60``, ``steps=500``,
        ``cell=2``, ``seed=0``, ``device="cpu"``.

    Returns
    -------
    Model
        The trained model; ``model.summary`` says how training went.
    """
    base = config or (init.config if init is not None else TrainConfig())
    config = base.replace(**overrides) if overrides else base
    events = train_events(image, axes, config, init=init)
    command = None
    try:
        while True:
            event = events.send(command)
            command = callback(event) if callback is not None else None
    except StopIteration as finished:
        return finished.value
    finally:
        events.close()


def denoise(
    image: Any,
    model: Model | str | os.PathLike,
    axes: str | None = None,
    mode: str | None = None,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Denoise ``image`` with a model (or a model file); see :meth:`Model.denoise`.

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
    """Load a model saved with :meth:`Model.save`.

    Raises
    ------
    ModelFileError
        When the file is missing, is not safetensors, is truncated, or holds
        tensors that do not match its metadata. Nothing is ever unpickled.
    """
    return _load_model(path)
