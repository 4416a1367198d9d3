"""The "Denoise with Blind2Unblind model" dock widget: apply a saved model,
or one trained in this session, to any image layer."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, SpinBox
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from napari_b2u._widgets.layers import (
    OUTPUT_SUFFIX,
    ask_package_path,
    guess_axes,
    image_layers,
    layer_data,
    show_output,
    show_residual,
)
from napari_b2u._widgets.session import SESSION
from napari_b2u._widgets.workers import (
    denoise_and_check,
    explain,
    make_worker,
    run_export,
    shut_down,
)
from napari_b2u.api import MODES, Model, ModelFileError, NoiseReport, load_model
from napari_b2u.config import (
    PRECISIONS,
    TILE_DEPTH,
    TILE_OVERLAP,
    TILE_OVERLAP_3D,
    TILE_SIZE,
    TILE_SIZE_3D,
)
from napari_b2u.engine import available_devices
from napari_b2u.engine.noise import describe_subsample

if TYPE_CHECKING:
    import napari

FROM_FILE = "model file…"


class DenoiseWidget(QWidget):
    """Denoise an image layer with a trained Blind2Unblind model."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._workers: set = set()
        self._loaded: tuple[Path, Model] | None = None
        self._last: tuple[Image, np.ndarray, NoiseReport] | None = None  # layer, output, report
        self._exports: set = set()

        self.source = ComboBox(label="model", choices=self._model_choices)
        self.file = FileEdit(label="model file", filter="*.safetensors", mode="r")
        self.model_info = Label(label="")
        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.axes = LineEdit(label="axes")
        self.mode = ComboBox(label="output", choices=["model default", *MODES])
        self.tile = SpinBox(label="tile size", value=TILE_SIZE, min=32, max=8192, step=32)
        self.overlap = SpinBox(
            label="tile overlap", value=TILE_OVERLAP, min=0, max=1024, step=16
        )
        self.depth = SpinBox(
            label="tile depth",
            value=TILE_DEPTH,
            min=4,
            max=4096,
            step=8,
            tooltip="Z slices per tile of a volume: deeper is faster and uses more memory",
            visible=False,
        )
        self._tiles_for: int | None = None  # spatial dims the tile fields were set for
        self.device = ComboBox(label="device", choices=available_devices())
        self.precision = ComboBox(label="precision", choices=["model default", *PRECISIONS])
        self.form = Container(
            widgets=[
                self.source,
                self.file,
                self.model_info,
                self.image,
                self.axes,
                self.mode,
                self.tile,
                self.overlap,
                self.depth,
                self.device,
                self.precision,
            ]
        )
        self.run_button = QPushButton("Denoise")
        self.export_button = QPushButton("Export to bioimage.io…")
        self.residual_button = QPushButton("Residual")
        self.residual_button.setToolTip("Add noisy - denoised as a layer: it should look like noise")
        self.residual_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.residual_button)
        buttons.addWidget(self.export_button)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addLayout(buttons)
        for w in (self.progress, self.status, self.verdict):
            layout.addWidget(w)
        layout.addStretch()

        self.source.changed.connect(self._update_model_info)
        self.file.changed.connect(self._update_model_info)
        self.image.changed.connect(self._guess_axes)
        self.run_button.clicked.connect(self.run)
        self.residual_button.clicked.connect(self.show_residual)
        self.export_button.clicked.connect(lambda: self.export_bioimageio())
        SESSION.changed.connect(self._on_new_model)
        self.viewer.layers.events.inserted.connect(self.reset_choices)
        self.viewer.layers.events.removed.connect(self.reset_choices)
        self.destroyed.connect(functools.partial(shut_down, self._workers))
        self.destroyed.connect(functools.partial(shut_down, self._exports))
        self.destroyed.connect(functools.partial(_forget, self._on_new_model))
        self.reset_choices()

    def _model_choices(self, *_: Any) -> list[str]:
        return [*reversed(SESSION.models), FROM_FILE]

    def _image_layers(self, *_: Any) -> list[Image]:
        return image_layers(self.viewer)

    def reset_choices(self, *_: Any) -> None:
        self.source.reset_choices()
        self.image.reset_choices()
        if self.image.value is None and self.image.choices:
            self.image.value = self.image.choices[-1]
        self._update_model_info()

    def _on_new_model(self) -> None:
        """A model was trained in this session: offer it, selected."""
        self.reset_choices()
        self.source.value = next(reversed(SESSION.models))

    def model(self) -> Model:
        """The chosen model (loads the file once); ``ModelFileError`` if unusable."""
        if self.source.value != FROM_FILE:
            return SESSION.models[self.source.value]
        path = Path(self.file.value)
        if self._loaded is None or self._loaded[0] != path:
            self._loaded = (path, load_model(path))
        return self._loaded[1]

    def _update_model_info(self, *_: Any) -> None:
        self.file.visible = self.source.value == FROM_FILE
        if self.source.value == FROM_FILE and not Path(self.file.value).is_file():
            self.model_info.value = "choose a .safetensors model file"
            return
        try:
            model = self.model()
        except ModelFileError as exc:
            self.model_info.value = str(exc)
            return
        self._set_tiles_for(model.spatial_dims)
        s, trained = model.summary, model.summary.trained_on
        kind = "volumes (3D), " if model.spatial_dims == 3 else ""
        self.model_info.value = (
            f"{kind}{model.channels} channel(s), depth {model.net.depth}/{model.net.features} features, "
            f"cell {model.config.cell}; trained {s.steps} steps, {s.seconds:.0f} s ({s.precision}) "
            f"on {json.dumps(trained.get('shape'))} {trained.get('dtype', '')}; "
            f"applied on {describe_subsample(model.subsample)}"
        )

    def _guess_axes(self, *_: Any) -> None:
        """Axes from the layer's labels, else as the chosen kind of model reads
        an unlabelled stack (a z-stack for a volume model)."""
        if self.image.value is not None:
            self.axes.value = guess_axes(self.image.value, self._tiles_for or 2)

    def _set_tiles_for(self, dims: int) -> None:
        """The tile defaults and the axes guess of planes or volumes when the
        kind of model changes (a user's values stay while it does not)."""
        if dims == self._tiles_for:
            return
        self._tiles_for = dims
        volume = dims == 3
        self.tile.value = TILE_SIZE_3D if volume else TILE_SIZE
        self.overlap.value = TILE_OVERLAP_3D if volume else TILE_OVERLAP
        self.depth.value = TILE_DEPTH
        self.depth.visible = volume
        self._guess_axes()

    def run(self) -> None:
        """Denoise the chosen layer in a worker; the output becomes a new layer."""
        if self._workers:
            show_error("Denoising is already running.")
            return
        layer = self.image.value
        try:
            if layer is None:
                raise ValueError("Choose an image layer to denoise.")
            model = self.model()
            data, axes = layer_data(layer), self.axes.value
            planes = model.planes(data, axes)
            if planes.channels != model.channels:
                raise ValueError(
                    f"The model takes {model.channels} channel(s), the layer has "
                    f"{planes.channels} (axes {axes!r}); check the axes or pick another model."
                )
        except (ValueError, TypeError) as exc:
            show_error(str(exc))
            return
        mode = None if self.mode.value == "model default" else self.mode.value
        worker = make_worker(
            denoise_and_check(
                model,
                data,
                axes,
                mode or model.config.mode,
                self.tile.value,
                self.overlap.value,
                self.device.value,
                None if self.precision.value == "model default" else self.precision.value,
                self.depth.value if model.spatial_dims == 3 else None,
            )
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(
            functools.partial(self._on_done, layer, model, mode or model.config.mode)
        )
        worker.errored.connect(lambda exc: show_error(f"Blind2Unblind: {explain(exc)}"))
        worker.finished.connect(functools.partial(self._on_finished, worker))
        self._workers.add(worker)
        self.run_button.setEnabled(False)
        worker.start()

    def _on_progress(self, progress: tuple[int, int]) -> None:
        done, total = progress
        self.progress.setValue(round(100 * done / max(total, 1)))
        self.status.setText(f"Denoising plane {done} of {total}…")

    def _on_done(self, layer: Image, model: Model, mode: str, result) -> None:
        out, report = result
        show_output(self.viewer, layer, out, model, mode)
        self._last = (layer, out, report)
        self.status.setText(f"Done: '{layer.name} {OUTPUT_SUFFIX}'.")
        self.verdict.setText(("✓ " if report.ok else "⚠ ") + report.summary())

    def export_bioimageio(self, path: str | None = None) -> None:
        """Export the chosen model as a bioimage.io package (asks for a file name
        when ``path`` is None), in a worker."""
        try:
            model = self.model()
        except (ModelFileError, OSError) as exc:
            show_error(str(exc))
            return
        path = path or ask_package_path(self, str(self.source.value).replace("…", ""))
        if path:
            run_export(model, path, self._exports)

    def show_residual(self) -> None:
        """Add noisy - denoised of the last result as a layer."""
        if self._last is None:
            show_info("Denoise a layer first; the residual is noisy - denoised.")
            return
        layer, out, report = self._last
        show_residual(self.viewer, layer, out, report.noise_std)

    def _on_finished(self, worker) -> None:
        self._workers.discard(worker)
        self.run_button.setEnabled(True)
        self.residual_button.setEnabled(self._last is not None)


def _forget(slot, *_: Any) -> None:
    SESSION.changed.disconnect(slot, missing_ok=True)
