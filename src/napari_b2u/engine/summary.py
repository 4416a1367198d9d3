"""How a training run went: one frozen record, stored as JSON in model files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class StopReason(str, Enum):
    """Why training ended (a ``str``, so ``reason == "time"`` works too)."""

    STEPS = "steps"  # the step limit was reached
    TIME = "time"  # the time budget was used up
    STOPPED = "stopped"  # the caller sent STOP
    DIVERGED = "diverged"  # the loss became NaN/inf or jumped; the last good weights were kept
    CAP = "cap"  # enough steps for data of this size (TrainConfig.cap_steps), time left over

    def __str__(self) -> str:
        return self.value

    @property
    def completed(self) -> bool:
        """Whether the run reached its planned end."""
        return self in (StopReason.STEPS, StopReason.TIME, StopReason.CAP)


@dataclass(frozen=True)
class TrainingSummary:
    """A training run's record.

    Attributes
    ----------
    steps : int
        Optimisation steps taken (over all continued runs).
    seconds : float
        Training time in seconds (over all continued runs).
    final_loss : float or None
        Mean total loss of the last reported steps.
    progress : float
        Fraction of the planned run done (1.0 when it completed).
    stop_reason : StopReason
        Why it ended.
    message : str or None
        What to do, when the run diverged or its ``visible`` output came out
        worse than the ``blind`` one (`napari_b2u.engine.noise.visible_check`).
    device : str
        Torch device it ran on.
    precision : str
        Precision of the network's passes (``"fp32"``, ``"bf16"``, ``"fp16"``).
    threads : int or None
        CPU threads (CPU runs).
    trained_on : dict
        ``shape``, ``dtype`` and ``axes`` of the training data.
    noise : dict or None
        The noise measured before training (`NoiseReport.to_dict`), when
        ``decorrelate="auto"`` measured it.
    finished_at : str
        UTC time, ISO 8601.
    versions : dict
        napari_b2u, torch and numpy versions.
    """

    steps: int = 0
    seconds: float = 0.0
    final_loss: float | None = None
    progress: float = 1.0
    stop_reason: StopReason = StopReason.STEPS
    message: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    threads: int | None = None
    trained_on: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] | None = None
    finished_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop_reason", StopReason(self.stop_reason))

    @property
    def completed(self) -> bool:
        """Whether training ran to its end (not stopped early)."""
        return self.progress >= 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["stop_reason"] = self.stop_reason.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainingSummary:
        """Inverse of `to_dict`; unknown keys (from newer files) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})
