"""Training as a generator of events, tiled inference and model files.

No Qt and no napari here: the API, the CLI and the napari widgets all drive
these same functions.
"""

from napari_b2u.engine.data import Planes, resolve_axes
from napari_b2u.engine.device import available_devices, resolve_device
from napari_b2u.engine.events import STOP, Done, Event, Preview, PreviewPlane, Started, Step
from napari_b2u.engine.model import Model, load_model
from napari_b2u.engine.modelfile import ModelFileError, read_metadata
from napari_b2u.engine.noise import NoiseReport, noise_report
from napari_b2u.engine.summary import StopReason, TrainingSummary
from napari_b2u.engine.training import run_to_end, train_events

__all__ = [
    "STOP",
    "Done",
    "Event",
    "Model",
    "ModelFileError",
    "NoiseReport",
    "Planes",
    "Preview",
    "PreviewPlane",
    "Started",
    "Step",
    "StopReason",
    "TrainingSummary",
    "available_devices",
    "load_model",
    "noise_report",
    "read_metadata",
    "resolve_axes",
    "resolve_device",
    "run_to_end",
    "train_events",
]
