"""Models trained in this napari session, shared by the two widgets."""

from __future__ import annotations

from psygnal import Signal

from napari_b2u.api import Model


class SessionModels:
    """Name -> model, newest last; ``changed`` fires on every addition."""

    changed = Signal()

    def __init__(self) -> None:
        self.models: dict[str, Model] = {}

    def add(self, name: str, model: Model) -> None:
        self.models.pop(name, None)
        self.models[name] = model
        self.changed.emit()


SESSION = SessionModels()
