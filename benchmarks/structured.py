"""A structured blind spot for Blind2Unblind, measured against pixel-shuffle
sub-sampling for noise correlated along X (the ``b2u_struct`` method).

structN2V's idea carried into B2U's masker: besides the pixels of its phase,
each masked copy also hides their X-neighbours, whose noise is correlated with
theirs, and every hidden pixel is interpolated from the rows above and below
only (the kernel ``[[.5, 1, .5], [0, 0, 0], [.5, 1, .5]] / 4``), so neither the
interpolated value nor the visible neighbours carry the hidden pixel's noise.
The mapper still takes only the phase's own pixels from each copy. With
``cell = 2`` the X-neighbours of phase ``(i, j)`` are phase ``(i, 1 - j)``: a
copy hides whole rows of its phase.

Benchmark code only: the package uses sub-sampling (``TrainConfig.decorrelate``),
which this comparison chose. The B2U training loop and inference are the
package's, with the masker swapped for the run.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

_ROWS_ONLY = ((0.5, 1.0, 0.5), (0.0, 0.0, 0.0), (0.5, 1.0, 0.5))


def structured_masker(
    y: torch.Tensor, cell: int = 2, *, planar: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like `napari_b2u.core.global_masker`, hiding each phase's X-neighbours too.

    Returns the masked volume and the *mapper's* masks (the phase pixels only),
    so `global_mapper` and the loss are unchanged. Images only (``planar`` is
    accepted for the masker's signature).
    """
    n, c, h, w = y.shape
    k = cell * cell
    kernel = torch.tensor(_ROWS_ONLY, dtype=y.dtype, device=y.device) / 4.0
    y_c = F.conv2d(y, kernel.expand(c, 1, 3, 3), padding=1, groups=c)
    rows = torch.arange(h, device=y.device) % cell
    cols = torch.arange(w, device=y.device) % cell
    ks = torch.arange(k, device=y.device)
    ki, kj = (ks // cell).view(-1, 1, 1), (ks % cell).view(-1, 1, 1)
    row_ok = rows.view(1, h, 1) == ki
    dist = (cols.view(1, 1, w) - kj) % cell
    phase = row_ok & (dist == 0)
    hidden = row_ok & ((dist == 0) | (dist == 1) | (dist == cell - 1))
    hidden = hidden.to(y.dtype).unsqueeze(1)  # (K, 1, H, W)
    volume = y_c[:, None] * hidden[None] + y[:, None] * (1 - hidden[None])
    masks = phase.to(y.dtype).unsqueeze(1).repeat(n, 1, 1, 1)
    return volume.reshape(n * k, c, h, w), masks


@contextlib.contextmanager
def structured_blind_spot():
    """Train and infer with `structured_masker` inside the block."""
    import napari_b2u.engine.inference as inference
    import napari_b2u.engine.training as training

    saved = training.global_masker, inference.global_masker
    training.global_masker = inference.global_masker = structured_masker
    try:
        yield
    finally:
        training.global_masker, inference.global_masker = saved
