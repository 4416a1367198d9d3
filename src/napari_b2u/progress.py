"""Progress bars (tqdm) and log lines fed by training and batch events.

One adapter for the API and the CLI alike. Bars go to stderr; what the noise
check found and chose goes to the ``napari_b2u`` logger (INFO), bars or not.
"""

from __future__ import annotations

import logging

from napari_b2u.batch import BatchEvent, FileDone, FilePlanes, FileTraining
from napari_b2u.engine import Done, Event, Started, Step, StopReason
from napari_b2u.engine.noise import describe_subsample

log = logging.getLogger("napari_b2u")


def log_started(event: Started, where: str = "") -> None:
    """Log what the noise check found and which sub-sampling training uses."""
    prefix = f"{where}: " if where else ""
    if event.noise is not None:
        log.info("%snoise check: %s", prefix, event.noise.headline())
    elif event.subsample != (1, 1):
        log.info("%straining on %s", prefix, describe_subsample(event.subsample))


class TrainingBar:
    """A tqdm bar over one training run's progress."""

    def __init__(self, disable: bool = False, desc: str = "training", leave: bool = True) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=100,
            unit="%",
            disable=disable,
            desc=desc,
            leave=leave,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        )

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            log_started(event)
        elif isinstance(event, Step):
            self.bar.n = round(100 * event.progress, 1)
            # the fit falls as the model learns; the raw loss rises with lambda by design
            self.bar.set_postfix(step=event.step, fit=f"{event.fit:.4g}", lam=f"{event.lam:.1f}")
        elif isinstance(event, Done):
            if event.reason is not StopReason.STOPPED:
                self.bar.n = 100
            self.bar.refresh()
            self.bar.close()


class BatchBars:
    """Two tqdm bars for `denoise_files`: files overall, and the current file
    (training to 80 %, then its planes)."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.tqdm, self.enabled = tqdm, enabled
        self.files = tqdm(total=total, desc="files", unit="file", disable=not enabled, position=0)
        self.current = None
        self._job = None

    def __call__(self, event: BatchEvent) -> None:
        if isinstance(event, FileDone):
            self.files.update(1)
            self._close_current()
            return
        if event.job is not self._job:
            self._open(event.job)
        if isinstance(event, FileTraining):
            if isinstance(event.event, Started):
                log_started(event.event, event.job.input.name)
            elif isinstance(event.event, Step):
                self.current.n = round(80 * event.event.progress)
                self.current.set_postfix_str(f"training, loss {event.event.loss:.4g}")
        elif isinstance(event, FilePlanes):
            self.current.n = 80 + round(20 * event.done / event.total)
            self.current.set_postfix_str(f"denoising plane {event.done}/{event.total}")

    def _open(self, job) -> None:
        self._close_current()
        self._job = job
        self.current = self.tqdm(
            total=100,
            desc=job.input.name,
            leave=False,
            position=1,
            disable=not self.enabled,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
        )

    def _close_current(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
        self._job = None

    def close(self) -> None:
        self._close_current()
        self.files.close()
