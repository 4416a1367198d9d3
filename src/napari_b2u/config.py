"""Every hyper-parameter of a training run, in one frozen dataclass.

The API, the CLI flags and the widget fields are all generated from
`TrainConfig`, so a default lives in exactly one place.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

#: Output modes of a trained model (method section 6).
MODES = ("weighted", "blind", "visible")
#: Values of ``TrainConfig.precision`` (see `napari_b2u.engine.precision`).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Default Y/X side of training patches: planes, and volumes (whose patches
#: also have ``patch_depth`` slices: 8 x 32 x 32 holds twice the pixels of 64 x 64).
PATCH_SIZE = 64
PATCH_SIZE_3D = 32
#: Default UNet depth: planes, and volumes (32-voxel patches end 4 voxels wide).
DEPTH = 4
DEPTH_3D = 3
#: Default tile side and overlap of tiled inference, in pixels.
TILE_SIZE = 512
TILE_OVERLAP = 64
#: ... for volumes: Y/X tiles, and Z tiles of ``TILE_DEPTH`` slices overlapping by ``TILE_DEPTH_OVERLAP``.
TILE_SIZE_3D = 256
TILE_OVERLAP_3D = 64
TILE_DEPTH = 32
TILE_DEPTH_OVERLAP = 16


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
    spatial_dims : int
        2: every plane of a stack is a 2D sample (a ``ZYX`` stack is trained as
        unrelated planes); 3: volumes, with 3D blind spots and a 3D UNet (the
        axes must contain Z; T and C keep their meaning).
    patch_depth : int
        Z side of the training patches of volumes (``spatial_dims=3``); 8
        slices train more steps in a budget and scored best on our phantom
        (``docs/benchmarks.md``).
    z_pool : int or None
        Volumes: how many UNet levels also pool along Z (the others pool Y and
        X only, keeping the Z resolution of shallow or anisotropic stacks).
        ``None``: from the patch depth, ``log2(patch_depth) - 3`` (1 for 16).
    mask_z : bool
        Volumes: hide voxels by their (Z, Y, X) phase, ``cell**3`` masked
        copies a step (section 10 of the method), or, when false (the
        default), by their (Y, X) phase in every slice, ``cell**2`` copies,
        with in-plane interpolation: a blind spot that still sees the
        neighbouring slices and costs 5 network passes a step instead of 9; it
        scored higher in every time budget we measured.
    depth : int or None
        UNet depth (pooling steps); the paper uses 5. ``None``: 4 for planes, 3
        for volumes, whose 32-voxel patches it leaves 4 voxels wide at the
        bottom (`net_depth`; 3 scored 0.7 dB above 4 on our phantom).
    features : int
        UNet encoder width; the paper's 48 trains too few steps in a CPU budget.
    patch_size : int or None
        Side (Y and X) of the random square training patches; ``None``: 64
        for planes, 32 for volumes (`patch_yx`).
    batch_size : int
        Patches per optimisation step.
    lr : float
        Adam learning rate.
    weight_decay : float
        Adam weight decay.
    grad_clip : float
        Clip each step's gradient norm at this many times the median norm of
        the last 100 steps, so that a few extreme batches cannot throw the
        weights far: unclipped, the 3D phantom broke at step 2402-2425 of 8523
        (37.9 dB at step 2250, 6.3 after), in fp32 as in bf16; clipped at 5x it
        trains through (docs/benchmarks.md). Only outliers are clipped (the
        99th percentile of the norms is about 6x their median). 0: no clipping.
    lr_milestones : tuple of float
        Fractions of training at which the lr is multiplied by ``lr_gamma``.
        The paper's 0.2, 0.4, 0.6, 0.8 suit its long runs; on a short run
        the first halving comes too early (docs/benchmarks.md: 0.5, 0.7, 0.9
        gains 0.6 dB at 60 s and is level at 300 s).
    lr_gamma : float
        Factor applied to the lr at each milestone.
    augment : bool
        Random flips and 90-degree rotations of the patches.
    cap_steps : bool
        When ``steps`` is not set, end a time-budgeted run early at
        ``256 * pixels**0.25`` steps, pixels of all planes trained on (4096
        for one 256x256 image, 9337 for Set12's twelve), even with time left:
        far longer runs make the visible output worse, not better (one
        256x256 image: 31.3 dB after 4000 steps, 23.6 after 16000;
        docs/benchmarks.md). The run then ends with ``stop_reason="cap"``.
        ``False``: use the whole budget. An explicit ``steps`` is never capped.
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
        A finished ``"visible"`` run whose visible output came out worse than
        its blind one (`napari_b2u.engine.noise.visible_check`) returns a model
        whose mode is ``"blind"``, with a warning.
    ensemble : bool
        Default of the trained model's output: average over the 8 flips and
        90-degree rotations of the input (a self-ensemble, 8x the inference cost).
    precision : str
        Numeric precision of the network's passes: ``"auto"`` (on CPUs with
        AMX or AVX512-BF16, bf16 where a sub-second probe measures it faster
        than fp32, else fp32; bf16 on CUDA GPUs that support it, fp16 with
        loss scaling on older CUDA GPUs; fp32 elsewhere), ``"fp32"``,
        ``"bf16"`` or ``"fp16"``. The loss, optimizer and weights stay fp32;
        outputs are float32. Inference follows the same rule (probed for
        inference).
    decorrelate : str
        Handling of noise that is correlated between neighbouring pixels, which
        breaks the blind-spot assumption: ``"auto"`` measures the noise before
        training (`napari_b2u.api.noise_report`) and sub-samples the axes it finds
        correlated (pixel-shuffle: the network sees every 2nd column and/or row,
        where the correlation has gone; outputs are reassembled), leaving
        independent noise alone; ``"off"`` never sub-samples; ``"X"``, ``"Y"``
        or ``"YX"`` sub-sample those axes by 2.
    """

    cell: int = 2
    eta: float = 1.0
    lam0: float = 2.0
    lam1: float = 20.0
    t1: float = 0.4
    spatial_dims: int = 2
    patch_depth: int = 8
    z_pool: int | None = None
    mask_z: bool = False
    depth: int | None = None
    features: int = 16
    patch_size: int | None = None
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-8
    grad_clip: float = 5.0
    lr_milestones: tuple[float, ...] = (0.5, 0.7, 0.9)
    lr_gamma: float = 0.5
    augment: bool = True
    cap_steps: bool = True
    steps: int | None = None
    time_budget: float | None = 60.0
    seed: int | None = 0
    device: str = "auto"
    mode: str = "visible"
    ensemble: bool = False
    precision: str = "auto"
    decorrelate: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_milestones", tuple(float(m) for m in self.lr_milestones))
        problems = []
        decorrelate = _decorrelate(self.decorrelate)
        if decorrelate is None:
            problems.append(
                "decorrelate must be 'auto', 'off' or the axes to sub-sample ('X', 'Y' or "
                f"'YX') (got {self.decorrelate!r})"
            )
        else:
            object.__setattr__(self, "decorrelate", decorrelate)
        if self.cell < 2:
            problems.append(f"cell must be >= 2 (got {self.cell})")
        if (self.depth is not None and self.depth < 1) or self.features < 1:
            problems.append("depth and features must be >= 1")
        if self.spatial_dims not in (2, 3):
            problems.append(f"spatial_dims must be 2 (planes) or 3 (volumes) (got {self.spatial_dims})")
        if self.patch_depth < 2:
            problems.append(f"patch_depth must be >= 2 (got {self.patch_depth})")
        if self.z_pool is not None and not 0 <= self.z_pool <= self.net_depth:
            problems.append(f"z_pool must be None or 0..depth (got {self.z_pool})")
        if self.batch_size < 1 or self.patch_yx < 2 * self.cell:
            problems.append(f"batch_size must be >= 1 and patch_size >= {2 * self.cell}")
        if not 0.0 <= self.t1 <= 1.0:
            problems.append(f"t1 is a fraction of training, in [0, 1] (got {self.t1})")
        if self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if not self.grad_clip >= 0:
            problems.append(f"grad_clip must be >= 0, 0 for no clipping (got {self.grad_clip})")
        if self.steps is None and self.time_budget is None:
            problems.append("set steps or time_budget (or both), else training never stops")
        if self.steps is not None and self.steps < 1:
            problems.append(f"steps must be >= 1 (got {self.steps})")
        if self.time_budget is not None and self.time_budget <= 0:
            problems.append(f"time_budget must be > 0 seconds (got {self.time_budget})")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS} (got {self.precision!r})")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES} (got {self.mode!r})")
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems) + ".")

    @property
    def patch_yx(self) -> int:
        """The Y/X side of the training patches: `patch_size`, or its default
        for the kind of data (`PATCH_SIZE` for planes, `PATCH_SIZE_3D` for volumes)."""
        if self.patch_size is not None:
            return self.patch_size
        return PATCH_SIZE_3D if self.spatial_dims == 3 else PATCH_SIZE

    @property
    def net_depth(self) -> int:
        """The UNet depth: `depth`, or its default for the kind of data
        (`DEPTH` for planes, `DEPTH_3D` for volumes)."""
        if self.depth is not None:
            return self.depth
        return DEPTH_3D if self.spatial_dims == 3 else DEPTH

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


def _decorrelate(value: str) -> str | None:
    """Canonical form of a ``decorrelate`` value (``None`` if invalid)."""
    text = str(value).strip()
    if text.lower() in ("auto", "off"):
        return text.lower()
    axes = text.upper()
    if axes and set(axes) <= set("YX") and len(set(axes)) == len(axes):
        return "".join(a for a in "YX" if a in axes)
    return None


def subsample_for(decorrelate: str) -> tuple[int, int] | None:
    """``(sy, sx)`` for explicit axes, ``(1, 1)`` for ``"off"``, ``None`` for ``"auto"``."""
    if decorrelate == "auto":
        return None
    return (2 if "Y" in decorrelate else 1, 2 if "X" in decorrelate else 1)


def z_levels(config: TrainConfig, patch_depth: int) -> int:
    """UNet levels that pool Z for volumes: ``config.z_pool``, or
    ``log2(patch_depth) - 3`` clipped to ``0..depth`` (16 slices: 1)."""
    if config.z_pool is not None:
        return config.z_pool
    return min(config.net_depth, max(0, int(math.log2(max(patch_depth, 1))) - 3))


def field_names() -> list[str]:
    """Field names of `TrainConfig`, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
