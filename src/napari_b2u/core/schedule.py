"""Pure schedules of training progress (fraction of the run done, 0..1)."""

from __future__ import annotations

from collections.abc import Sequence


def lambda_schedule(progress: float, t1: float, lam0: float = 2.0, lam1: float = 20.0) -> float:
    """Lambda of the re-visible loss at a given fraction of training.

    ``lam0`` while ``progress <= t1``, then linear to ``lam1`` at ``progress = 1``.

    Parameters
    ----------
    progress : float
        Fraction of training done, clipped to [0, 1].
    t1 : float
        Where the ramp starts (0.8 for fixed synthetic noise, 0.4 for real noise).
    lam0 : float
        Value up to ``t1``.
    lam1 : float
        Value at the end of training.

    Returns
    -------
    float
    """
    p = min(max(float(progress), 0.0), 1.0)
    if p <= t1 or t1 >= 1.0:
        return float(lam0)
    return float(lam0 + (lam1 - lam0) * (p - t1) / (1.0 - t1))


#: The paper's lr milestones (fractions of training), for its long runs.
PAPER_LR_MILESTONES = (0.2, 0.4, 0.6, 0.8)


def lr_schedule(
    progress: float,
    lr: float,
    milestones: Sequence[float] = PAPER_LR_MILESTONES,
    gamma: float = 0.5,
) -> float:
    """Step decay: ``lr * gamma**(number of milestones reached)``.

    Without the decay the loss diverges while lambda ramps up, so it is part
    of the method as we run it, not an option.
    """
    p = min(max(float(progress), 0.0), 1.0)
    return float(lr * gamma ** sum(p >= m for m in milestones))
