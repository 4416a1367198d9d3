"""Form fields for every TrainConfig field, generated from the dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any

from magicgui.widgets import CheckBox, Container, LineEdit, SpinBox, create_widget

from napari_b2u.config import TrainConfig
from napari_b2u.core.schedule import PAPER_LR_MILESTONES

#: Fields shown in the simple part of the Train widget, not in "Advanced".
SIMPLE_FIELDS = ("time_budget", "device", "precision", "mode", "decorrelate", "spatial_dims")

PRESETS: dict[str, dict[str, Any]] = {
    "Fast (CPU)": {"depth": None, "features": 16, "patch_size": None, "batch_size": 4, "cell": 2,
                   "lr_milestones": TrainConfig.lr_milestones},
    "Paper size (GPU)": {"depth": 5, "features": 48, "patch_size": 128, "batch_size": 4, "cell": 4,
                         "lr_milestones": PAPER_LR_MILESTONES},
}

_INT_RANGES = {
    "cell": (2, 8),
    "depth": (-1, 7),
    "features": (4, 256),
    "patch_size": (-1, 1024),
    "batch_size": (1, 256),
    "steps": (0, 10_000_000),
    "seed": (-1, 2**31 - 1),
    "patch_depth": (2, 512),
    "z_pool": (-1, 7),
}
_LABELS = {
    "steps": "max steps (0: none)",
    "patch_size": "patch size (-1: auto)",
    "depth": "depth (-1: auto)",
    "seed": "seed (-1: random)",
    "patch_depth": "3D: patch depth (Z)",
    "z_pool": "3D: Z-pooling levels (-1: auto)",
    "mask_z": "3D: mask along Z too",
}
#: Integer fields whose ``None`` the form shows as -1.
_NONE_IS_MINUS_ONE = ("seed", "z_pool", "patch_size", "depth")


class ConfigForm(Container):
    """One widget per advanced `TrainConfig` field."""

    def __init__(self) -> None:
        widgets = [
            self._make(f) for f in dataclasses.fields(TrainConfig) if f.name not in SIMPLE_FIELDS
        ]
        super().__init__(widgets=widgets, labels=True)
        self.set_values(TrainConfig())

    @staticmethod
    def _make(field: dataclasses.Field):
        name, label = field.name, _LABELS.get(field.name, field.name.replace("_", " "))
        if isinstance(field.default, bool):
            return CheckBox(name=name, label=label)
        if name in _INT_RANGES:
            lo, hi = _INT_RANGES[name]
            return SpinBox(name=name, label=label, min=lo, max=hi)
        # floats and tuples as text: spin boxes cannot show 1e-8
        return create_widget(name=name, label=label, widget_type=LineEdit, value="")

    def set_values(self, config: TrainConfig | dict[str, Any]) -> None:
        values = config.to_dict() if isinstance(config, TrainConfig) else config
        for name, value in values.items():
            if name not in self.asdict():
                continue
            widget = self[name]
            if name == "steps":
                widget.value = value or 0
            elif name in _NONE_IS_MINUS_ONE:
                widget.value = -1 if value is None else value
            elif isinstance(widget, LineEdit):
                widget.value = (
                    ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
                )
            else:
                widget.value = value

    def values(self) -> dict[str, Any]:
        """The fields as TrainConfig keyword arguments (``ValueError`` on bad text)."""
        out: dict[str, Any] = {}
        for name, value in self.asdict().items():
            if name == "steps":
                out[name] = value or None
            elif name in _NONE_IS_MINUS_ONE:
                out[name] = None if value < 0 else value
            elif name == "lr_milestones":
                out[name] = tuple(float(v) for v in value.replace(",", " ").split())
            elif isinstance(self[name], LineEdit):
                try:
                    out[name] = float(value)
                except ValueError:
                    raise ValueError(
                        f"{name.replace('_', ' ')} must be a number, got {value!r}."
                    ) from None
            else:
                out[name] = value
        return out
