"""Generators that the widgets run in napari thread workers.

They hold no method logic: they drive the API's model and the engine's
training generator, and never touch Qt, layers or the viewer.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from napari_b2u.api import Model
from napari_b2u.engine import Planes


class TaskFailed(Exception):
    """An error raised in a worker, re-raised as a non-RuntimeError: superqt
    treats a RuntimeError from a generator as a deleted worker and drops it."""


def guarded(gen: Generator) -> Generator:
    """``yield from gen``, passing sent values through, with RuntimeErrors
    (torch's out-of-memory among them) turned into `TaskFailed`."""
    try:
        return (yield from gen)
    except RuntimeError as exc:
        raise TaskFailed(explain(exc)) from exc


def make_worker(gen: Generator):
    """An unstarted napari worker running ``gen`` (errors go to ``errored`` only)."""
    from napari.qt.threading import create_worker

    return create_worker(guarded, gen, _start_thread=False, _ignore_errors=True)


def denoise_planes(
    model: Model,
    data: Any,
    axes: str,
    mode: str,
    tile_size: int | None,
    tile_overlap: int | None,
    device: str | None,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Denoise ``data`` plane by plane, yielding ``(done, total)``; returns the output."""
    planes = Planes(data, axes)
    out = np.empty(planes.shape, dtype=np.float32)
    yield 0, planes.n
    for i, plane in model.iter_denoise(planes, mode, tile_size, tile_overlap, device):
        out[planes.index(i)] = plane
        yield i + 1, planes.n
    return out


def explain(exc: BaseException) -> str:
    """A message that says what to do about an error."""
    text = str(exc)
    if "out of memory" in text.lower():
        return (
            "The device ran out of memory. Use a smaller tile size, patch size or batch "
            f"size, or choose the CPU as device. ({text.splitlines()[0]})"
        )
    return text


def quit_all(workers: set) -> None:
    """Ask every worker to stop at its next yield."""
    for worker in list(workers):
        worker.quit()


def shut_down(workers: set) -> None:
    """For a widget being deleted: cut the workers' signals to it, then quit them."""
    for worker in list(workers):
        for name in ("yielded", "returned", "errored", "finished"):
            try:
                getattr(worker, name).disconnect()
            except (TypeError, RuntimeError):  # nothing connected, or already gone
                pass
    quit_all(workers)
