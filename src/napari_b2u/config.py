"""Every hyper-parameter of a training run, in one frozen dataclass.

The API, the CLI flags and the widget fields are all generated from
`TrainConfig`, so a default lives in exactly one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: Output modes of a trained model (method section 6).
MODES = ("weighted", "blind", "visible")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a Blind2Unblind training run.

    The defaults train a useful small model in about a minute on a 2-core
    CPU: they are the best of the configurations we measured per unit of
    time (``docs/benchmarks.md``). ``mode="visible"`` scores as well as
    ``"weighted"`` there and takes one network pass instead of ``cell**2 + 1``.

    Parameters
    ----------
    cell : int
        Side of the masking cell (2: 4 masked copies, 4: the authors' 16).
    eta : float
        Weight of the regulariser ``L_reg``.
    lam0 : float
        Lambda of the re-visible loss at the start of training.
    lam1 : float
        Lambda of the re-visible loss at the end of training.
    t1 : float
        Fraction of training after which lambda ramps from ``lam0`` to ``lam1``
        (0.4 for real/varying noise, 0.8 for fixed synthetic noise).
    depth : int
        UNet depth (pooling steps); the paper uses 5.
    features : int
        UNet encoder width; the paper's 48 trains too few steps in a CPU budget.
    patch_size : int
        Side of the random square training patches.
    batch_size : int
        Patches per optimisation step.
    lr : float
        Adam learning rate.
    weight_decay : float
        Adam weight decay.
    lr_milestones : tuple of float
        Fractions of training at which the lr is multiplied by ``lr_gamma``.
    lr_gamma : float
        Factor applied to the lr at each milestone.
    augment : bool
        Random flips and 90-degree rotations of the patches.
    steps : int or None
        Stop after this many optimisation steps.
    time_budget : float or None
        Stop after this many seconds. With both set, whichever comes first;
        the lambda and lr schedules follow whichever limit applies. At least
        one of ``steps`` and ``time_budget`` must be set.
    seed : int or None
        Seed for weights and patch sampling (reproducible on CPU with ``steps``);
        ``None``: random.
    device : str
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    mode : str
        Default output of the trained model: ``"weighted"``, ``"blind"`` or ``"visible"``.
    """

    cell: int = 2
    eta: float = 1.0
    lam0: float = 2.0
    lam1: float = 20.0
    t1: float = 0.4
    depth: int = 4
    features: int = 16
    patch_size: int = 64
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-8
    lr_milestones: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    lr_gamma: float = 0.5
    augment: bool = True
    steps: int | None = None
    time_budget: float | None = 60.0
    seed: int | None = 0
    device: str = "auto"
    mode: str = "visible"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_milestones", tuple(float(m) for m in self.lr_milestones))
        problems = []
        if self.cell < 2:
            problems.append(f"cell must be >= 2 (got {self.cell})")
        if self.depth < 1 or self.features < 1:
            problems.append("depth and features must be >= 1")
        if self.batch_size < 1 or self.patch_size < 2 * self.cell:
            problems.append(f"batch_size must be >= 1 and patch_size >= {2 * self.cell}")
        if not 0.0 <= self.t1 <= 1.0:
            problems.append(f"t1 is a fraction of training, in [0, 1] (got {self.t1})")
        if self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.steps is None and self.time_budget is None:
            problems.append("set steps or time_budget (or both), else training never stops")
        if self.steps is not None and self.steps < 1:
            problems.append(f"steps must be >= 1 (got {self.steps})")
        if self.time_budget is not None and self.time_budget <= 0:
            problems.append(f"time_budget must be > 0 seconds (got {self.time_budget})")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES} (got {self.mode!r})")
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems) + ".")

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with some fields changed; unknown names raise ``TypeError``."""
        names = field_names()
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(
                f"Unknown TrainConfig field(s) {unknown}; valid fields are: {', '.join(names)}."
            )
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the public fields."""
        return {name: _jsonable(getattr(self, name)) for name in field_names()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; fields it does not know are ignored
        (a model file from a newer version may carry more)."""
        known = {k: v for k, v in data.items() if k in field_names()}
        return cls(**known)


def field_names() -> list[str]:
    """Field names of `TrainConfig`, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
