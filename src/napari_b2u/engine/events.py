"""What the training generator yields, and what can be sent back to it.

One small frozen dataclass per kind of event; the trained model is the
generator's return value, not an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_b2u.config import TrainConfig
from napari_b2u.engine.summary import StopReason

if TYPE_CHECKING:
    from napari_b2u.engine.noise import NoiseReport


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


#: Send this into the training generator (or return it from an API callback)
#: to stop early and keep the model trained so far.
STOP = _Stop()


@dataclass(frozen=True)
class PreviewPlane:
    """Send this into the training generator to preview another plane
    (the one the viewer shows) from the next preview on; for volumes,
    ``plane`` is the volume and ``z`` the slice to show."""

    plane: int
    z: int | None = None


Command = _Stop | PreviewPlane | None


@dataclass(frozen=True)
class Started:
    """Training is about to take its first step."""

    config: TrainConfig
    device: str
    n_params: int
    n_planes: int  # planes, or volumes
    plane_shape: tuple[int, ...]  # (H, W), or (D, H, W) for volumes
    channels: int
    patch_shape: tuple[int, ...]
    start_step: int  # > 0 when a stopped run is continued
    subsample: tuple[int, int] = (1, 1)  # pixel-shuffle sub-sampling (decorrelation)
    precision: str = "fp32"  # of the network's passes
    noise: NoiseReport | None = None  # what decorrelate="auto" measured, if it did
    step_cap: int | None = None  # where a time-budgeted run ends at the latest (cap_steps)


def fit_loss(l_rev: float, lam: float) -> float:
    """``l_rev / (lam + 1)**2``, the loss the progress displays show (see `Step.fit`)."""
    return l_rev / (lam + 1.0) ** 2


@dataclass(frozen=True)
class Step:
    """Progress, reported at least every ``report_interval`` seconds of training.

    Losses are means over the steps since the previous ``Step`` event.
    """

    step: int
    elapsed: float
    progress: float
    loss: float
    l_rev: float
    l_reg: float
    lam: float
    lr: float
    steps_per_second: float
    remaining: float | None  # seconds, estimated

    @property
    def fit(self) -> float:
        """``l_rev / (lam + 1)**2``: how far the output is from the noisy
        image. It falls while the model learns, where the raw losses rise
        with lambda by construction (``L_rev`` scales with ``(lam + 1)**2``)."""
        return fit_loss(self.l_rev, self.lam)


@dataclass(frozen=True)
class Preview:
    """The current model's visible output ``f(y)`` on a crop of one plane, in
    input units (one network pass, so previews cost little training time).

    ``image`` is ``(h, w)`` or ``(h, w, C)``; ``offset`` is the crop's
    top-left corner ``(y, x)`` in the plane; for volumes, ``z`` is the slice shown.
    """

    step: int
    plane: int
    image: np.ndarray
    offset: tuple[int, int]
    z: int | None = None


@dataclass(frozen=True)
class Done:
    """Training ended, for ``reason`` (a `StopReason`: ``"steps"``, ``"time"``,
    ``"cap"``, ``"stopped"`` or ``"diverged"``: the loss became NaN/inf or
    jumped (``LOSS_JUMP``), the last good weights are kept and ``message``
    says what to do). A finished
    run's ``message`` also says when its ``visible`` output came out worse
    than the ``blind`` one (`napari_b2u.engine.noise.visible_check`)."""

    step: int
    elapsed: float
    reason: StopReason
    final_loss: float | None
    message: str | None = None


Event = Started | Step | Preview | Done
