"""What the training generator yields, and what can be sent back to it.

One small frozen dataclass per kind of event; the trained model is the
generator's return value, not an event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_b2u.config import TrainConfig


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


#: Send this into the training generator (or return it from an API callback)
#: to stop early and keep the model trained so far.
STOP = _Stop()


@dataclass(frozen=True)
class Started:
    """Training is about to take its first step."""

    config: TrainConfig
    device: str
    n_params: int
    n_planes: int
    plane_shape: tuple[int, int]
    channels: int
    patch_shape: tuple[int, int]
    start_step: int  # > 0 when a stopped run is continued


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


@dataclass(frozen=True)
class Preview:
    """The current model's visible output ``f(y)`` on a crop of one plane, in
    input units (one network pass, so previews cost little training time).

    ``image`` is ``(h, w)`` or ``(h, w, C)``; ``offset`` is the crop's
    top-left corner ``(y, x)`` in the plane.
    """

    step: int
    plane: int
    image: np.ndarray
    offset: tuple[int, int]


@dataclass(frozen=True)
class Done:
    """Training ended; ``reason`` is ``"steps"``, ``"time"``, ``"stopped"`` or
    ``"diverged"`` (the loss became NaN/inf: the last good weights are kept and
    ``message`` says what to do)."""

    step: int
    elapsed: float
    reason: str
    final_loss: float | None
    message: str | None = None


Event = Started | Step | Preview | Done
