"""A trained denoiser: network, normalisation, config and training summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from napari_b2u.config import MODES, TrainConfig
from napari_b2u.core.unet import UNet
from napari_b2u.engine.data import Planes
from napari_b2u.engine.device import resolve_device, use_all_cores
from napari_b2u.engine.inference import iter_denoised_planes


class Model:
    """A Blind2Unblind model ready to denoise images like the one it was trained on.

    Build one with `napari_b2u.api.train` or `napari_b2u.api.load_model`.

    Attributes
    ----------
    net : UNet
        The network (in the normalised intensity space).
    config : TrainConfig
        The configuration it was trained with.
    mean, std : numpy.ndarray
        Per-channel normalisation, in the training data's intensity units.
    summary : dict
        Training summary: steps, seconds, final_loss, progress, stop_reason,
        trained_on (shape, dtype, axes), versions.
    optimizer_state : dict or None
        Adam state, kept so that a stopped run can be continued exactly.
    """

    def __init__(
        self,
        net: UNet,
        config: TrainConfig,
        mean: np.ndarray,
        std: np.ndarray,
        summary: dict[str, Any] | None = None,
        optimizer_state: dict[str, Any] | None = None,
    ) -> None:
        self.net = net.eval()
        self.config = config
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        self.summary = dict(summary or {})
        self.optimizer_state = optimizer_state

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"Model(channels={self.channels}, depth={self.net.depth}, features={self.net.features}, "
            f"cell={self.config.cell}, steps={s.get('steps')}, seconds={s.get('seconds', 0):.0f})"
        )

    @property
    def channels(self) -> int:
        """Number of image channels the model takes."""
        return self.net.in_channels

    @property
    def completed(self) -> bool:
        """Whether training ran to its end (not stopped early)."""
        return float(self.summary.get("progress", 1.0)) >= 1.0

    def denoise(
        self,
        image: Any,
        axes: str | None = None,
        mode: str | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        device: str | None = None,
    ) -> np.ndarray:
        """Denoise an image or stack.

        Parameters
        ----------
        image : array-like
            numpy, dask or zarr array; see `napari_b2u.api.train` for ``axes``.
        axes : str, optional
            One letter per dimension, e.g. ``"YX"``, ``"TYX"``, ``"YXC"``.
        mode : {"weighted", "blind", "visible"}, optional
            Which output (default: the model's ``config.mode``).
        tile_size : int, optional
            Tile side in pixels (default 512); smaller tiles use less memory.
        tile_overlap : int, optional
            Overlap of neighbouring tiles in pixels (default 64).
        device : str, optional
            Torch device (default: the model's ``config.device``).

        Returns
        -------
        numpy.ndarray
            float32 array of ``image.shape``, in the input's intensity units.
        """
        planes = Planes(image, axes)
        out = np.empty(planes.shape, dtype=np.float32)
        for i, plane in self.iter_denoise(planes, mode, tile_size, tile_overlap, device):
            out[planes.index(i)] = plane
        return out

    def iter_denoise(
        self,
        planes: Planes,
        mode: str | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        device: str | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(i, denoised plane i)`` one plane at a time (bounded memory);
        write each with ``out[planes.index(i)] = plane``."""
        mode = mode or self.config.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if planes.channels != self.channels:
            raise ValueError(
                f"The model was trained on {self.channels}-channel images but this image has "
                f"{planes.channels} channel(s) (axes {planes.axes!r}). Check the axes, or train "
                "a model on images like this one."
            )
        dev = resolve_device(device or self.config.device)
        if dev.type == "cpu":
            use_all_cores()
        self.net.to(dev, memory_format=torch.channels_last).eval()
        yield from iter_denoised_planes(
            planes,
            self.net,
            self.mean,
            self.std,
            mode=mode,
            cell=self.config.cell,
            lam=self.config.lam1,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            device=dev,
            should_stop=should_stop,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Save as a safetensors file (atomically: a temporary file, then a rename)."""
        from napari_b2u.engine.modelfile import save_model

        save_model(self, path)

    def state_for_file(self) -> dict[str, torch.Tensor]:
        """Tensors of the model, for `modelfile`."""
        tensors = {
            f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()
        }
        tensors["norm.mean"] = torch.from_numpy(self.mean.copy())
        tensors["norm.std"] = torch.from_numpy(self.std.copy())
        return tensors
