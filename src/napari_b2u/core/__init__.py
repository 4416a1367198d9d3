"""Blind2Unblind in pure torch: masker, mapper, loss, schedules and the UNet.

Nothing here touches Qt, napari or files; see ``docs/method.md`` for the maths.
"""

from napari_b2u.core.loss import b2u_loss
from napari_b2u.core.masking import global_mapper, global_masker, interpolate
from napari_b2u.core.schedule import lambda_schedule, lr_schedule
from napari_b2u.core.unet import UNet

__all__ = [
    "UNet",
    "b2u_loss",
    "global_mapper",
    "global_masker",
    "interpolate",
    "lambda_schedule",
    "lr_schedule",
]
