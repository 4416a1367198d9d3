"""Denoising many files: self-supervised per file, or with one model; locally
or spread over a dask.distributed cluster. Built on the engine alone."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_b2u.config import TrainConfig
from napari_b2u.engine import (
    Event,
    Model,
    NoiseReport,
    Planes,
    load_model,
    noise_report,
    run_to_end,
    train_events,
)
from napari_b2u.engine.data import UNNAMED, PlaneSet
from napari_b2u.engine.images import (
    is_readable,
    open_image,
    pages_in_plane_order,
    tiff_pages,
    write_tiff,
)
from napari_b2u.engine.noise import sample_planes

log = logging.getLogger("napari_b2u")


class BatchError(RuntimeError):
    """Some files failed; the others were written.

    Attributes
    ----------
    done : list of pathlib.Path
        Outputs written or already complete.
    failed : dict
        Input path -> error message.
    """

    def __init__(self, done: list[Path], failed: dict[Path, str]) -> None:
        self.done, self.failed = done, failed
        lines = "\n".join(f"  {path}: {msg}" for path, msg in failed.items())
        super().__init__(f"{len(failed)} of {len(done) + len(failed)} file(s) failed:\n{lines}")


@dataclass(frozen=True)
class Job:
    """One input and where its output goes."""

    input: Path
    output: Path
    skip: bool  # output already complete (resume)


# Progress of a batch, one small frozen dataclass per kind (as the engine's events).
@dataclass(frozen=True)
class FileTraining:
    """A training event (`Started`, `Step`, ...) of the model trained for ``job``."""

    job: Job
    event: Event


@dataclass(frozen=True)
class FilePlanes:
    """``done`` of ``total`` planes of ``job`` are denoised."""

    job: Job
    done: int
    total: int


@dataclass(frozen=True)
class FileDone:
    """``job`` ended: written to ``output`` (with the noise ``report`` on its
    residual), or failed with ``error``."""

    job: Job
    output: Path | None
    report: NoiseReport | None
    error: str | None = None


BatchEvent = FileTraining | FilePlanes | FileDone


def expand_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Paths, folders (their readable files) and glob patterns, in order, without repeats."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir() and path.suffix.lower() != ".zarr":
            found += sorted(
                p for p in path.iterdir() if is_readable(p) and not p.name.startswith(".")
            )
        elif any(ch in text for ch in "*?["):
            found += sorted(Path(p) for p in glob.glob(text, recursive=True))
        else:
            found.append(path)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise FileNotFoundError(f"No input files found in {list(map(str, inputs))}.")
    return unique


def output_path(path: Path, out_dir: Path, suffix: str) -> Path:
    stem = path.name
    for ext in (
        ".ome.tiff",
        ".ome.tif",
        *(e for e in (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".zarr")),
    ):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    return out_dir / f"{stem}{suffix}.tif"


def plan(
    inputs,
    out_dir: str | os.PathLike,
    suffix: str = "_b2u",
    overwrite: bool = False,
    resume: bool = True,
) -> list[Job]:
    """Which outputs will be written, and which are already complete."""
    out_dir = Path(out_dir)
    jobs = []
    for path in expand_inputs(inputs):
        out = output_path(path, out_dir, suffix)
        if out.resolve() == path.resolve():
            raise ValueError(
                f"{path}: the output would overwrite the input; choose another out_dir or suffix."
            )
        exists = out.exists()
        if exists and not (overwrite or resume):
            raise FileExistsError(
                f"{out} exists; pass overwrite=True (--overwrite) or resume=True."
            )
        jobs.append(Job(path, out, skip=exists and resume and not overwrite))
    return jobs


def process_file(
    job: Job,
    model: Model | str | os.PathLike | None,
    *,
    mode: str | None,
    axes: str | None,
    dtype: str,
    tile_size: int | None,
    tile_overlap: int | None,
    device: str | None,
    config: TrainConfig,
    precision: str | None = None,
    ensemble: bool | None = None,
    tile_depth: int | None = None,
    callback: Callable[[BatchEvent], Any] | None = None,
) -> FileDone:
    """Train (when ``model`` is None) and denoise one file.

    ``callback`` receives `FileTraining` and `FilePlanes` events. Returns the
    `FileDone` (output path and the noise report on the residual of the
    planes `noise_report` samples).
    """
    image = open_image(job.input)
    axes = Planes(image.data, axes or image.axes).axes  # checked before training
    if model is None:
        model = run_to_end(
            train_events(image.data, axes, config),
            (lambda e: callback(FileTraining(job, e))) if callback else None,
        )
    elif not isinstance(model, Model):
        model = load_model(model)
    planes = model.planes(image.data, axes)
    out_dtype = _output_dtype(dtype, planes.dtype)
    convert = (lambda a: a) if out_dtype == np.float32 else (lambda a: _cast(a, out_dtype))
    sampled: dict[int, np.ndarray] = {}  # float32 outputs of the planes the report reads
    picks = set(sample_planes(planes.n))

    def planes_out():
        for i, plane in model.iter_denoise(
            planes, mode, tile_size, tile_overlap, device,
            precision=precision, ensemble=ensemble, tile_depth=tile_depth,
        ):
            if i in picks:
                sampled[i] = plane
            if callback:
                callback(FilePlanes(job, i + 1, planes.n))
            yield i, convert(plane)

    if image.tiff.get("metadata") is None:
        image.tiff["metadata"] = {}
    image.tiff["metadata"]["axes"] = _tiff_axes(planes.axes)
    if pages_in_plane_order(planes.axes, planes.spatial_dims):
        pages = tiff_pages(planes, planes_out())
        write_tiff(job.output, pages, planes.shape, out_dtype, planes.axes, image.tiff)
    else:  # stack axes after Y/X: assemble in memory, then write
        steps = model.denoise_steps(
            image.data, axes, mode, tile_size, tile_overlap, device, precision, ensemble,
            tile_depth=tile_depth,
        )
        try:
            while True:
                done, total = next(steps)
                if callback and done:
                    callback(FilePlanes(job, done, total))
        except StopIteration as finished:
            out = finished.value
        sampled.update({i: out[planes.index(i)] for i in picks})
        write_tiff(job.output, [convert(out)], planes.shape, out_dtype, planes.axes, image.tiff)
    order = sorted(sampled)
    report = noise_report(
        np.stack([np.asarray(planes.array[planes.index(i)]) for i in order]),
        np.stack([sampled[i] for i in order]),
        UNNAMED + planes.kept_axes,
        handled=model.subsample,
    )
    return FileDone(job, job.output, report)


def stack_files(
    paths: list[Path], axes: str | None, spatial_dims: int = 2
) -> tuple[Any, str | None]:
    """All planes (or volumes) of ``paths`` as one lazy (dask) array for
    training, and its axes: ``N[C]YX``, or ``NZ[C]YX`` for volumes.

    One file is returned as it is. Files of different plane (volume) sizes
    become a `PlaneSet` (axes ``None``: it carries its own); they must share
    their channels.
    """
    images = [open_image(p) for p in paths]
    if len(images) == 1:
        return images[0].data, axes or images[0].axes
    import dask.array as da

    planes = [Planes(im.data, axes or im.axes, spatial_dims) for im in images]
    if len({(p.channels, *p.spatial_shape) for p in planes}) > 1:
        return PlaneSet(planes), None  # sizes differ: sampled file by file
    first = planes[0]
    channel = "C" if first.channel_dim is not None else ""
    inner = ("Z" if spatial_dims == 3 else "") + channel + "YX"
    stacks = []
    for p in planes:
        order = p.stack_dims + [p.axes.index(a) for a in inner]
        arr = da.from_array(p.array, chunks=-1) if not isinstance(p.array, da.Array) else p.array
        stacks.append(arr.transpose(order).reshape((p.n, *(p.shape[p.axes.index(a)] for a in inner))))
    return da.concatenate(stacks), UNNAMED + inner


def _tiff_axes(axes: str) -> str:
    # our stack axes may be named N (guessed); tifffile knows Q for "unknown"
    return axes.replace(UNNAMED, "Q")


def _output_dtype(dtype: str, input_dtype: np.dtype) -> np.dtype:
    if dtype in ("float32", None):
        return np.dtype(np.float32)
    if dtype == "keep":
        return (
            np.dtype(input_dtype) if np.dtype(input_dtype).kind in "uif" else np.dtype(np.float32)
        )
    raise ValueError(f"dtype must be 'float32' or 'keep', got {dtype!r}.")


def _cast(plane: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip into an integer dtype's range (floats are just cast)."""
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(plane), info.min, info.max).astype(dtype)
    return plane.astype(dtype)


def run_jobs(
    jobs: list[Job],
    model,
    *,
    scheduler=None,
    callback: Callable[[BatchEvent], Any] | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Process ``jobs`` locally, or on a dask.distributed scheduler; ``callback``
    sees every event (a `FileDone` per file, including failures). Raises
    `BatchError` at the end if any failed."""
    todo = [j for j in jobs if not j.skip]
    done = [j.output for j in jobs if j.skip]
    failed: dict[Path, str] = {}

    def finish(result: FileDone) -> None:
        if result.error is None:
            done.append(result.output)
        else:
            failed[result.job.input] = result.error
            log.error("%s: %s", result.job.input, result.error)
        if callback:
            callback(result)

    if scheduler is None:
        for job in todo:
            finish(_guarded(job, model, callback, kwargs))
    else:
        _run_distributed(todo, model, scheduler, finish, kwargs)
    if failed:
        raise BatchError(done, failed)
    return done


def _guarded(job: Job, model, callback, kwargs: dict) -> FileDone:
    """`process_file`, with the errors a bad file can cause turned into a failed `FileDone`."""
    try:
        return process_file(job, model, callback=callback, **kwargs)
    except (OSError, ValueError, TypeError, FloatingPointError, RuntimeError) as exc:
        return FileDone(job, None, None, str(exc))


def _run_distributed(todo, model, scheduler, finish, kwargs) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ImportError(
            "A scheduler was given but dask.distributed is not installed: pip install distributed"
        ) from exc
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = [client.submit(_guarded, job, model, None, kwargs, pure=False) for job in todo]
        for future in as_completed(futures):
            finish(future.result())
    finally:
        if client is not scheduler:
            client.close()
