"""Generators that the widgets run in napari thread workers.

They hold no method logic: they drive the API's model and the engine's
training generator, and never touch Qt, layers or the viewer.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Generator
from typing import Any

import numpy as np

from napari_b2u.api import Model, NoiseReport, noise_report


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


#: Every worker made here, for `finish_at_exit`.
_made: weakref.WeakSet = weakref.WeakSet()
#: How long interpreter exit waits for them (ms). A training worker stops at its next step.
EXIT_WAIT_MS = 10_000


def make_worker(gen: Generator):
    """An unstarted napari worker running ``gen`` (errors go to ``errored`` only).

    A quit worker closes ``gen``: superqt leaves an aborted worker's generator
    suspended, so its ``finally`` blocks (the allocator setting of
    `keep_memory` among them) would wait for garbage collection. ``aborted``
    comes after the last ``send``, and `shut_down` leaves it connected.
    """
    from napari.qt.threading import create_worker

    worker = create_worker(guarded, gen, _start_thread=False, _ignore_errors=True)
    worker.aborted.connect(gen.close)
    _made.add(worker)
    return worker


@atexit.register
def finish_at_exit(msecs: int = EXIT_WAIT_MS) -> None:
    """Quit our workers and wait for their threads before Python exits.

    napari waits for workers when its app quits (``aboutToQuit``); a script
    that closes the viewer and ends never quits the app, and a worker still
    running would emit into Qt objects that interpreter exit has deleted
    ("GeneratorWorkerSignals has been deleted").
    """
    workers = set(_made)
    if not workers:
        return
    quit_all(workers)
    from qtpy.QtCore import QThreadPool

    QThreadPool.globalInstance().waitForDone(msecs)


def denoise_and_check(
    model: Model,
    data: Any,
    axes: str,
    mode: str,
    tile_size: int | None,
    tile_overlap: int | None,
    device: str | None,
    precision: str | None = None,
    tile_depth: int | None = None,
) -> Generator[tuple[int, int], None, tuple[np.ndarray, NoiseReport]]:
    """Denoise ``data`` plane by plane, yielding ``(done, total)``; returns the
    output and the noise report on its residual."""
    out = yield from model.denoise_steps(
        data, axes, mode, tile_size, tile_overlap, device, precision, tile_depth=tile_depth
    )
    return out, noise_report(data, out, axes, handled=model.subsample)


def export_bioimageio(model: Model, path: str) -> Generator[None, None, str]:
    """Export ``model`` as a bioimage.io package (a worker generator); returns the path."""
    yield
    return str(model.export_bioimageio(path))


def run_export(model: Model, path: str, workers: set):
    """Start an export worker; success and errors become notifications."""
    from napari.utils.notifications import show_error, show_info

    worker = make_worker(export_bioimageio(model, path))
    worker.returned.connect(lambda out: show_info(f"bioimage.io package written to {out}"))
    worker.errored.connect(lambda exc: show_error(f"Export failed: {explain(exc)}"))
    worker.finished.connect(lambda: workers.discard(worker))
    workers.add(worker)
    worker.start()
    return worker


def check_noise(data: Any, axes: str) -> Generator[None, None, NoiseReport]:
    """The before-training noise report, as a worker generator (one yield, so
    that a newer request can quit it)."""
    yield
    return noise_report(data, axes=axes)


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
