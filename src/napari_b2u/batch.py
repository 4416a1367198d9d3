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
from napari_b2u.engine import Model, Planes, load_model, run_to_end, train_events
from napari_b2u.engine.images import (
    is_readable,
    open_image,
    pages_in_plane_order,
    tiff_pages,
    write_tiff,
)

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


@dataclass
class Job:
    """One input and where its output goes."""

    input: Path
    output: Path
    skip: bool  # output already complete (resume)


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
    callback: Callable[[str, Any], None] | None = None,
) -> Path:
    """Train (when ``model`` is None) and denoise one file; returns the output path.

    ``callback(kind, value)`` receives ``("train", event)`` and
    ``("plane", (done, total))`` for progress bars.
    """
    image = open_image(job.input)
    axes = axes or image.axes
    planes = Planes(image.data, axes)
    if model is None:
        model = run_to_end(
            train_events(image.data, planes.axes, config),
            (lambda e: callback("train", e)) if callback else None,
        )
    elif not isinstance(model, Model):
        model = load_model(model)
    out_dtype = _output_dtype(dtype, planes.dtype)
    convert = (lambda a: a) if out_dtype == np.float32 else (lambda a: _cast(a, out_dtype))

    def planes_out():
        for i, plane in model.iter_denoise(planes, mode, tile_size, tile_overlap, device):
            if callback:
                callback("plane", (i + 1, planes.n))
            yield i, convert(plane)

    if image.tiff.get("metadata") is None:
        image.tiff["metadata"] = {}
    image.tiff["metadata"]["axes"] = _tiff_axes(planes.axes)
    if pages_in_plane_order(planes.axes):
        pages = tiff_pages(planes, planes_out())
        return write_tiff(job.output, pages, planes.shape, out_dtype, planes.axes, image.tiff)
    # Stack axes after Y/X: assemble in memory, then write.
    out = np.empty(planes.shape, dtype=out_dtype)
    for i, plane in planes_out():
        out[planes.index(i)] = plane
    return write_tiff(job.output, [out], planes.shape, out_dtype, planes.axes, image.tiff)


def _tiff_axes(axes: str) -> str:
    # our stack axes may be named N (guessed); tifffile knows Q for "unknown"
    return axes.replace("N", "Q")


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
    on_done: Callable[[Job, Path | None, str | None], None] | None = None,
    callback_for: Callable[[Job], Callable | None] | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Process ``jobs`` locally, or on a dask.distributed scheduler; raises
    `BatchError` at the end if any failed."""
    todo = [j for j in jobs if not j.skip]
    done = [j.output for j in jobs if j.skip]
    failed: dict[Path, str] = {}

    def finish(job: Job, out: Path | None, error: str | None) -> None:
        if error is None:
            done.append(out)
        else:
            failed[job.input] = error
            log.error("%s: %s", job.input, error)
        if on_done:
            on_done(job, out, error)

    if scheduler is None:
        for job in todo:
            try:
                cb = callback_for(job) if callback_for else None
                finish(job, process_file(job, model, callback=cb, **kwargs), None)
            except (OSError, ValueError, TypeError, FloatingPointError, RuntimeError) as exc:
                finish(job, None, str(exc))
    else:
        _run_distributed(todo, model, scheduler, finish, kwargs)
    if failed:
        raise BatchError(done, failed)
    return done


def _run_distributed(todo, model, scheduler, finish, kwargs) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ImportError(
            "A scheduler was given but dask.distributed is not installed: pip install distributed"
        ) from exc
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = {client.submit(_remote, job, model, kwargs, pure=False): job for job in todo}
        for future in as_completed(futures):
            out, error = future.result()
            finish(futures[future], out, error)
    finally:
        if client is not scheduler:
            client.close()


def _remote(job: Job, model, kwargs: dict) -> tuple[Path | None, str | None]:
    try:
        return process_file(job, model, **kwargs), None
    except (OSError, ValueError, TypeError, FloatingPointError, RuntimeError) as exc:
        return None, str(exc)
