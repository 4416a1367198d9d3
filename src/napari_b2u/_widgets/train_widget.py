"""The "Train Blind2Unblind" dock widget.

Everything heavy runs in napari thread workers that drive the engine's
training generator; the slots here only update the plot, the status and
the layers, on the main thread.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, LineEdit
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
    ask_package_path,
    current_plane,
    describe,
    guess_axes,
    image_layers,
    layer_data,
    preview_layer_kwargs,
    show_image,
    show_output,
    show_residual,
)
from napari_b2u._widgets.session import SESSION
from napari_b2u._widgets.workers import (
    check_noise,
    denoise_and_check,
    explain,
    make_worker,
    quit_all,
    run_export,
    shut_down,
)
from napari_b2u.api import (
    MODES,
    PRECISIONS,
    STOP,
    Done,
    Model,
    NoiseReport,
    Preview,
    PreviewPlane,
    Started,
    Step,
    TrainConfig,
)
from napari_b2u.engine import Planes, available_devices, train_events

if TYPE_CHECKING:
    import napari

#: Seconds between live previews.
PREVIEW_INTERVAL = 5.0
#: Choices of the decorrelate field (TrainConfig.decorrelate).
DECORRELATE = ("auto", "off", "X", "Y", "YX")


class RunState(str, Enum):
    """What the widget is doing; drives which buttons are enabled (a ``str``:
    ``state == "idle"`` works too)."""

    IDLE = "idle"
    TRAINING = "training"
    STOPPING = "stopping"
    DENOISING = "denoising"


@dataclass
class RunRecord:
    """The current (or last) run: its input, and what it produced."""

    layer: Image
    data: Any
    axes: str
    spatial_dims: int = 2
    output: np.ndarray | None = None
    report: NoiseReport | None = None

    @property
    def name(self) -> str:
        return self.layer.name


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
        self.state = RunState.IDLE
        self.run_record: RunRecord | None = None
        self.noise: NoiseReport | None = None  # the check of the chosen layer
        self._workers: set = set()
        self._train_worker = None
        self._check_worker = None
        self._plane: tuple[int, int | None] = (0, None)  # previewed plane (volume) and Z slice

        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.axes = LineEdit(
            label="axes", tooltip="one letter per dimension: YX, TYX, ZYX, YXC (RGB), TCYX..."
        )
        self.volumes = CheckBox(
            text="3D (volumes)",
            tooltip="Train on Z-stacks as volumes (3D blind spots, a 3D network) instead of "
            "unrelated planes. Shown when the axes contain Z.",
        )
        self.info = Label(label="")
        self.noise_info = Label(label="noise")
        self.minutes = FloatSpinBox(
            label="time budget (min)", value=1.0, min=0.05, max=24 * 60, step=0.5
        )
        self.preset = ComboBox(label="model size", choices=list(PRESETS))
        self.device = ComboBox(label="device", choices=available_devices())
        self.precision = ComboBox(
            label="precision",
            choices=PRECISIONS,
            value=TrainConfig().precision,
            tooltip="auto: bf16 where it measures faster on this CPU or GPU (1.5-3x more steps), else fp32",
        )
        self.mode = ComboBox(label="output", choices=list(MODES), value=TrainConfig().mode)
        self.decorrelate = ComboBox(
            label="decorrelate",
            choices=DECORRELATE,
            value=TrainConfig().decorrelate,
            tooltip="auto: sub-sample the axes whose noise the check finds correlated; "
            "off: never; X / Y / YX: sub-sample those axes by 2",
        )
        self.simple = Container(
            widgets=[
                self.image,
                self.axes,
                self.volumes,
                self.info,
                self.noise_info,
                self.minutes,
                self.preset,
                self.device,
                self.precision,
                self.mode,
                self.decorrelate,
            ]
        )
        self.advanced = ConfigForm()
        collapsible = QCollapsible("Advanced")
        collapsible.addWidget(self.advanced.native)

        self.train_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.continue_button = QPushButton("Continue")
        self.save_button = QPushButton("Save model…")
        self.export_button = QPushButton("Export to bioimage.io…")
        self.residual_button = QPushButton("Residual")
        self.residual_button.setToolTip("Add noisy - denoised as a layer: it should look like noise")
        buttons = QHBoxLayout()
        for b in (
            self.train_button,
            self.stop_button,
            self.continue_button,
            self.save_button,
            self.residual_button,
        ):
            buttons.addWidget(b)
        more = QHBoxLayout()
        more.addWidget(self.export_button)
        self.status = QLabel("Choose an image layer and press Train.")
        self.status.setWordWrap(True)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.plot = make_loss_plot()

        layout = QVBoxLayout(self)
        layout.addWidget(self.simple.native)
        layout.addWidget(collapsible)
        layout.addLayout(buttons)
        layout.addLayout(more)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.verdict)
        layout.addWidget(self.plot)
        layout.addStretch()

        self.image.changed.connect(self._on_layer_changed)
        self.axes.changed.connect(self._update_info)
        self.volumes.changed.connect(self._update_info)
        self.preset.changed.connect(lambda name: self.advanced.set_values(PRESETS[name]))
        self.train_button.clicked.connect(self.train)
        self.stop_button.clicked.connect(self.stop)
        self.continue_button.clicked.connect(self.continue_training)
        self.save_button.clicked.connect(lambda: self.save_model())
        self.residual_button.clicked.connect(self.show_residual)
        self.export_button.clicked.connect(lambda: self.export_bioimageio())
        self.viewer.layers.events.inserted.connect(self.reset_choices)
        self.viewer.layers.events.removed.connect(self.reset_choices)
        self.viewer.dims.events.current_step.connect(self._update_plane)
        # Stop the workers when the dock (or the viewer) goes away; the partial
        # holds the worker set, not the widget, which is being deleted.
        self.destroyed.connect(functools.partial(shut_down, self._workers))
        self.advanced.set_values(PRESETS[self.preset.value])
        self.reset_choices()
        self._set_state(RunState.IDLE)

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

    @property
    def spatial_dims(self) -> int:
        """3 when the layer is to be trained as volumes, else 2."""
        return 3 if "Z" in self.axes.value.upper() and self.volumes.value else 2

    def _update_info(self, *_: Any) -> None:
        layer = self.image.value
        self.volumes.visible = "Z" in self.axes.value.upper()
        self.info.value = (
            describe(layer, self.axes.value, self.spatial_dims)
            if layer is not None
            else "no image layer"
        )
        self._update_plane()
        self._check_noise()

    def _check_noise(self) -> None:
        """Measure the chosen layer's noise in a worker (before training)."""
        if self._check_worker is not None:
            self._check_worker.quit()
            self._check_worker = None
        self.noise = None
        layer = self.image.value
        try:
            Planes(layer_data(layer), self.axes.value)
        except (AttributeError, ValueError, TypeError):
            self.noise_info.value = ""
            return
        self.noise_info.value = "checking…"
        worker = make_worker(check_noise(layer_data(layer), self.axes.value))
        worker.returned.connect(functools.partial(self._on_noise_checked, worker))
        worker.errored.connect(lambda exc: setattr(self.noise_info, "value", f"not measured: {exc}"))
        worker.finished.connect(functools.partial(self._workers.discard, worker))
        self._workers.add(worker)
        self._check_worker = worker
        worker.start()

    def _on_noise_checked(self, worker, report: NoiseReport) -> None:
        if worker is not self._check_worker:
            return  # the layer or axes changed since
        self._check_worker = None
        self.noise = report
        self.noise_info.value = report.headline()
        self.noise_info.tooltip = report.summary()

    def _update_plane(self, *_: Any) -> None:
        layer, axes, dims = self.image.value, self.axes.value, self.spatial_dims
        if self.state is RunState.TRAINING and self.run_record is not None:
            run = self.run_record  # previews follow the layer being trained on
            layer, axes, dims = run.layer, run.axes, run.spatial_dims
        try:
            planes = Planes(layer_data(layer), axes, dims)
            self._plane = current_plane(layer, planes, self.viewer.dims.point)
        except (AttributeError, ValueError, TypeError):
            self._plane = (0, None)
        # sent only while training: sending replaces a STOP not yet delivered
        if self.state is RunState.TRAINING and self._train_worker is not None:
            self._train_worker.send(PreviewPlane(*self._plane))

    def config(self) -> TrainConfig:
        """The configuration the fields describe (``ValueError`` if invalid)."""
        return TrainConfig(
            **self.advanced.values(),
            time_budget=self.minutes.value * 60.0,
            device=self.device.value,
            precision=self.precision.value,
            mode=self.mode.value,
            decorrelate=self.decorrelate.value,
            spatial_dims=self.spatial_dims,
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
        if self.state is RunState.TRAINING and self._train_worker is not None:
            self._train_worker.send(STOP)
            self._set_state(RunState.STOPPING)
        elif self.state is RunState.DENOISING:
            quit_all(self._workers)

    def save_model(self, path: str | None = None) -> None:
        """Save the current model (asks for a file name when ``path`` is None)."""
        if self.model is None:
            show_info("There is no trained model to save yet.")
            return
        if path is None:
            name = self.run_record.name if self.run_record is not None else "model"
            path, _ = QFileDialog.getSaveFileName(
                self, "Save model", f"{name}.safetensors", "Model (*.safetensors)"
            )
            if not path:
                return
        try:
            self.model.save(path)
        except (OSError, ValueError) as exc:
            show_error(f"Could not save the model: {exc}")
            return
        show_info(f"Model saved to {path}")

    def export_bioimageio(self, path: str | None = None) -> None:
        """Export the current model as a bioimage.io package (asks for a file name
        when ``path`` is None), in a worker."""
        if self.model is None:
            show_info("There is no trained model to export yet.")
            return
        name = self.run_record.name if self.run_record is not None else "model"
        path = path or ask_package_path(self, name)
        if path:
            run_export(self.model, path, self._workers)

    def show_residual(self) -> None:
        """Add noisy - denoised of the last run as a layer."""
        run = self.run_record
        if run is None or run.output is None:
            show_info("Train and denoise first; the residual is noisy - denoised.")
            return
        noise_std = run.report.noise_std if run.report is not None else None
        show_residual(self.viewer, run.layer, run.output, noise_std)

    def _start(self, init: Model | None) -> None:
        if self.state is not RunState.IDLE:
            show_info("Training is already running; stop it first.")
            return
        layer = self.image.value
        if layer is None:
            show_error("Choose an image layer to train on.")
            return
        try:
            config = self.config()  # a continued run takes the form's lr etc. too
            data, axes = layer_data(layer), self.axes.value
            Planes(data, axes, config.spatial_dims)  # fail here, with the message, not in the worker
        except (ValueError, TypeError) as exc:
            show_error(str(exc))
            return
        if init is None or init.completed:
            self.plot.clear()
        self.run_record = RunRecord(layer, data, axes, config.spatial_dims)
        self.verdict.setText("")
        self._update_plane()
        worker = make_worker(
            train_events(
                data,
                axes,
                config,
                init=init,
                preview_plane=PreviewPlane(*self._plane),
                preview_interval=PREVIEW_INTERVAL,
            )
        )
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_trained)
        self._launch(worker)
        self._train_worker = worker
        self._set_state(RunState.TRAINING)

    def _launch(self, worker) -> None:
        worker.errored.connect(self._on_error)
        worker.finished.connect(functools.partial(self._on_finished, worker))
        self._workers.add(worker)
        worker.start()

    # ------------------------------------------------------------------ slots
    def _on_event(self, event: Any) -> None:
        if isinstance(event, Started):
            resumed = f", continuing from step {event.start_step}" if event.start_step else ""
            noise = f" · {event.noise.headline()}" if event.noise is not None else ""
            noun = "volume" if len(event.plane_shape) == 3 else "plane"
            self.status.setText(
                f"Training on {event.device} ({event.precision}): {event.n_planes} {noun}(s) of "
                f"{'x'.join(map(str, event.plane_shape))}, {event.n_params:,} parameters"
                f"{resumed}{noise}"
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
            layer = self.run_record.layer if self.run_record is not None else None
            if layer is not None and (layer.rgb or event.image.ndim == 2):
                show_image(self.viewer, event.image, preview_layer_kwargs(layer, event.offset))
        elif isinstance(event, Done):
            if event.message:
                show_warning(event.message)
            why = "enough steps for this data, see 'cap steps'" if event.reason == "cap" else event.reason
            self.status.setText(f"Trained {event.step} steps in {event.elapsed:.0f} s ({why}); denoising…")

    def _on_trained(self, model: Model) -> None:
        self.model = model
        self.mode.value = model.config.mode  # 'blind' when the visible output came out worse
        run = self.run_record
        SESSION.add(run.name, model)
        self._train_worker = None
        worker = make_worker(
            denoise_and_check(
                model,
                run.data,
                run.axes,
                self.mode.value,
                None,
                None,
                self.device.value,
                self.precision.value,
            )
        )
        worker.yielded.connect(self._on_denoise_progress)
        worker.returned.connect(self._on_denoised)
        self._launch(worker)
        self._set_state(RunState.DENOISING)

    def _on_denoise_progress(self, progress: tuple[int, int]) -> None:
        done, total = progress
        self.progress.setValue(round(100 * done / max(total, 1)))
        self.status.setText(f"Denoising plane {done} of {total}…")

    def _on_denoised(self, result: tuple[np.ndarray, NoiseReport]) -> None:
        run = self.run_record
        run.output, run.report = result
        show_output(self.viewer, run.layer, run.output, self.model, self.mode.value)
        s = self.model.summary
        loss = f", final loss {s.final_loss:.4g}" if s.final_loss is not None else ""
        self.status.setText(
            f"Done: {s.steps} steps in {s.seconds:.0f} s{loss}. Output: '{run.name} {OUTPUT_SUFFIX}'."
        )
        self.verdict.setText(("✓ " if run.report.ok else "⚠ ") + run.report.summary())

    def _on_error(self, exc: Exception) -> None:
        show_error(f"Blind2Unblind: {explain(exc)}")
        self.status.setText(f"Failed: {explain(exc)}")

    def _on_finished(self, worker) -> None:
        self._workers.discard(worker)
        if worker is self._train_worker:
            self._train_worker = None
        if not (self._workers - {self._check_worker}):
            self._set_state(RunState.IDLE)

    def _set_state(self, state: RunState) -> None:
        self.state = state
        idle = state is RunState.IDLE
        has_output = self.run_record is not None and self.run_record.output is not None
        self.train_button.setEnabled(idle and self.image.value is not None)
        self.continue_button.setEnabled(idle and self.model is not None)
        self.save_button.setEnabled(idle and self.model is not None)
        self.export_button.setEnabled(idle and self.model is not None)
        self.residual_button.setEnabled(idle and has_output)
        self.stop_button.setEnabled(state in (RunState.TRAINING, RunState.DENOISING))
        for w in (self.simple, self.advanced):
            w.enabled = idle
