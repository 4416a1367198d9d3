"""The "Train Blind2Unblind" dock widget.

Everything heavy runs in napari thread workers that drive the engine's
training generator; the slots here only update the plot, the status and
the layers, on the main thread.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, LineEdit
from napari.layers import Image
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_b2u._widgets.config_form import PRESETS, ConfigForm
from napari_b2u._widgets.layers import (
    OUTPUT_SUFFIX,
    current_plane,
    describe,
    guess_axes,
    image_layers,
    layer_data,
    preview_layer_kwargs,
    show_image,
    show_output,
)
from napari_b2u._widgets.session import SESSION
from napari_b2u._widgets.workers import denoise_planes, explain, make_worker, quit_all, shut_down
from napari_b2u.api import MODES, STOP, Done, Model, Preview, Started, Step, TrainConfig
from napari_b2u.engine import Planes, available_devices, train_events

if TYPE_CHECKING:
    import napari

#: Seconds between live previews.
PREVIEW_INTERVAL = 5.0


def make_loss_plot() -> QWidget:
    """The live loss plot, or a notice saying what to install when pyqtgraph is
    missing (it is a dependency, but an environment can still lack it)."""
    try:
        from napari_b2u._widgets.loss_plot import LossPlot
    except ImportError as exc:
        return MissingPlot(
            f"The live loss plot needs pyqtgraph, which cannot be imported ({exc}). "
            "Install it into napari's environment (pip install pyqtgraph) and reopen "
            "this widget; training works without it."
        )
    return LossPlot()


class MissingPlot(QLabel):
    """Stands in for the loss plot: a message, and the plot's methods as no-ops."""

    n_points = 0

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setWordWrap(True)

    def append(self, *_: Any) -> None:
        pass

    def clear(self) -> None:
        pass


class TrainWidget(QWidget):
    """Train Blind2Unblind on an image layer and add the denoised result."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.model: Model | None = None
        self.state = "idle"
        self._workers: set = set()
        self._train_worker = None
        self._run: dict[str, Any] = {}
        self._plane = 0

        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.axes = LineEdit(
            label="axes", tooltip="one letter per dimension: YX, TYX, ZYX, YXC (RGB), TCYX..."
        )
        self.info = Label(label="")
        self.minutes = FloatSpinBox(
            label="time budget (min)", value=1.0, min=0.05, max=24 * 60, step=0.5
        )
        self.preset = ComboBox(label="model size", choices=list(PRESETS))
        self.device = ComboBox(label="device", choices=available_devices())
        self.mode = ComboBox(label="output", choices=list(MODES), value=TrainConfig().mode)
        self.simple = Container(
            widgets=[
                self.image,
                self.axes,
                self.info,
                self.minutes,
                self.preset,
                self.device,
                self.mode,
            ]
        )
        self.advanced = ConfigForm()
        collapsible = QCollapsible("Advanced")
        collapsible.addWidget(self.advanced.native)

        self.train_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.continue_button = QPushButton("Continue")
        self.save_button = QPushButton("Save model…")
        buttons = QHBoxLayout()
        for b in (self.train_button, self.stop_button, self.continue_button, self.save_button):
            buttons.addWidget(b)
        self.status = QLabel("Choose an image layer and press Train.")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.plot = make_loss_plot()

        layout = QVBoxLayout(self)
        layout.addWidget(self.simple.native)
        layout.addWidget(collapsible)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        layout.addStretch()

        self.image.changed.connect(self._on_layer_changed)
        self.axes.changed.connect(self._update_info)
        self.preset.changed.connect(lambda name: self.advanced.set_values(PRESETS[name]))
        self.train_button.clicked.connect(self.train)
        self.stop_button.clicked.connect(self.stop)
        self.continue_button.clicked.connect(self.continue_training)
        self.save_button.clicked.connect(lambda: self.save_model())
        self.viewer.layers.events.inserted.connect(self.reset_choices)
        self.viewer.layers.events.removed.connect(self.reset_choices)
        self.viewer.dims.events.current_step.connect(self._update_plane)
        # Stop the workers when the dock (or the viewer) goes away; the partial
        # holds the worker set, not the widget, which is being deleted.
        self.destroyed.connect(functools.partial(shut_down, self._workers))
        self.advanced.set_values(PRESETS[self.preset.value])
        self.reset_choices()
        self._set_state("idle")

    # ----------------------------------------------------------------- inputs
    def _image_layers(self, *_: Any) -> list[Image]:
        return image_layers(self.viewer)

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.image.reset_choices()
        if self.image.value is None and self.image.choices:
            self.image.value = self.image.choices[-1]
        self._set_state(self.state)

    def _on_layer_changed(self, layer: Image | None) -> None:
        if layer is not None:
            self.axes.value = guess_axes(layer)
        self._update_info()

    def _update_info(self, *_: Any) -> None:
        layer = self.image.value
        self.info.value = (
            describe(layer, self.axes.value) if layer is not None else "no image layer"
        )
        self._update_plane()

    def _update_plane(self, *_: Any) -> None:
        layer = self.image.value
        try:
            planes = Planes(layer_data(layer), self.axes.value)
            self._plane = current_plane(layer, planes, self.viewer.dims.point)
        except (AttributeError, ValueError, TypeError):
            self._plane = 0

    def config(self) -> TrainConfig:
        """The configuration the fields describe (``ValueError`` if invalid)."""
        return TrainConfig(
            **self.advanced.values(),
            time_budget=self.minutes.value * 60.0,
            device=self.device.value,
            mode=self.mode.value,
        )

    # ---------------------------------------------------------------- actions
    def train(self) -> None:
        """Start a new run from scratch."""
        self._start(init=None)

    def continue_training(self) -> None:
        """Continue the current model: a stopped run resumes where it stopped,
        a finished one trains again from its weights."""
        if self.model is None:
            show_info("Train a model first; Continue resumes it.")
            return
        self._start(init=self.model)

    def stop(self) -> None:
        """Stop training and keep the model trained so far (or stop denoising)."""
        if self.state == "training" and self._train_worker is not None:
            self._train_worker.send(STOP)
            self._set_state("stopping")
        elif self.state == "denoising":
            quit_all(self._workers)

    def save_model(self, path: str | None = None) -> None:
        """Save the current model (asks for a file name when ``path`` is None)."""
        if self.model is None:
            show_info("There is no trained model to save yet.")
            return
        if path is None:
            default = f"{self._run.get('name', 'model')}.safetensors"
            path, _ = QFileDialog.getSaveFileName(
                self, "Save model", default, "Model (*.safetensors)"
            )
            if not path:
                return
        try:
            self.model.save(path)
        except (OSError, ValueError) as exc:
            show_error(f"Could not save the model: {exc}")
            return
        show_info(f"Model saved to {path}")

    def _start(self, init: Model | None) -> None:
        if self.state != "idle":
            show_info("Training is already running; stop it first.")
            return
        layer = self.image.value
        if layer is None:
            show_error("Choose an image layer to train on.")
            return
        try:
            config = self.config()  # a continued run takes the form's lr etc. too
            data, axes = layer_data(layer), self.axes.value
            Planes(data, axes)  # fail here, with the message, rather than in the worker
        except (ValueError, TypeError) as exc:
            show_error(str(exc))
            return
        if init is None or init.completed:
            self.plot.clear()
        self._run = {"layer": layer, "name": layer.name, "data": data, "axes": axes}
        self._update_plane()
        worker = make_worker(
            train_events(
                data,
                axes,
                config,
                init=init,
                preview_plane=lambda: self._plane,
                preview_interval=PREVIEW_INTERVAL,
            )
        )
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_trained)
        self._launch(worker)
        self._train_worker = worker
        self._set_state("training")

    def _launch(self, worker) -> None:
        worker.errored.connect(self._on_error)
        worker.finished.connect(functools.partial(self._on_finished, worker))
        self._workers.add(worker)
        worker.start()

    # ------------------------------------------------------------------ slots
    def _on_event(self, event: Any) -> None:
        if isinstance(event, Started):
            resumed = f", continuing from step {event.start_step}" if event.start_step else ""
            self.status.setText(
                f"Training on {event.device}: {event.n_planes} plane(s) of {event.plane_shape[0]}x"
                f"{event.plane_shape[1]}, {event.n_params:,} parameters{resumed}"
            )
        elif isinstance(event, Step):
            self.plot.append(event.step, event.loss, event.l_rev, event.l_reg, event.lam)
            self.progress.setValue(round(100 * event.progress))
            left = f" · ~{event.remaining:.0f} s left" if event.remaining is not None else ""
            self.status.setText(
                f"step {event.step} · {event.elapsed:.0f} s{left} · {event.steps_per_second:.1f} steps/s"
                f" · loss {event.loss:.4g} · λ {event.lam:.1f}"
            )
        elif isinstance(event, Preview):
            layer = self._run.get("layer")
            if layer is not None and (layer.rgb or event.image.ndim == 2):
                show_image(self.viewer, event.image, preview_layer_kwargs(layer, event.offset))
        elif isinstance(event, Done):
            if event.message:
                show_warning(event.message)
            self.status.setText(
                f"Trained {event.step} steps in {event.elapsed:.0f} s ({event.reason}); denoising…"
            )

    def _on_trained(self, model: Model) -> None:
        self.model = model
        SESSION.add(self._run["name"], model)
        self._train_worker = None
        worker = make_worker(
            denoise_planes(
                model,
                self._run["data"],
                self._run["axes"],
                self.mode.value,
                None,
                None,
                self.device.value,
            )
        )
        worker.yielded.connect(self._on_denoise_progress)
        worker.returned.connect(self._on_denoised)
        self._launch(worker)
        self._set_state("denoising")

    def _on_denoise_progress(self, progress: tuple[int, int]) -> None:
        done, total = progress
        self.progress.setValue(round(100 * done / max(total, 1)))
        self.status.setText(f"Denoising plane {done} of {total}…")

    def _on_denoised(self, out) -> None:
        layer = self._run["layer"]
        show_output(self.viewer, layer, out, self.model, self.mode.value)
        s = self.model.summary
        loss = f", final loss {s['final_loss']:.4g}" if s.get("final_loss") is not None else ""
        self.status.setText(
            f"Done: {s['steps']} steps in {s['seconds']:.0f} s{loss}. Output: '{layer.name} {OUTPUT_SUFFIX}'."
        )

    def _on_error(self, exc: Exception) -> None:
        show_error(f"Blind2Unblind: {explain(exc)}")
        self.status.setText(f"Failed: {explain(exc)}")

    def _on_finished(self, worker) -> None:
        self._workers.discard(worker)
        if worker is self._train_worker:
            self._train_worker = None
        if not self._workers:
            self._set_state("idle")

    def _set_state(self, state: str) -> None:
        self.state = state
        idle = state == "idle"
        self.train_button.setEnabled(idle and self.image.value is not None)
        self.continue_button.setEnabled(idle and self.model is not None)
        self.save_button.setEnabled(idle and self.model is not None)
        self.stop_button.setEnabled(state in ("training", "denoising"))
        for w in (self.simple, self.advanced):
            w.enabled = idle
