"""Model files: safetensors tensors plus one JSON metadata entry.

Loading never unpickles anything: safetensors holds raw tensors only, and
every way a file can be wrong ends in a `ModelFileError` that names
the file and the problem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from napari_b2u.config import TrainConfig
from napari_b2u.core.unet import UNet
from napari_b2u.engine.atomic import write_bytes_atomic
from napari_b2u.engine.model import Model

FORMAT_VERSION = 1
META_KEY = "napari_b2u"


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or not a napari-b2u model."""


def save_model(model: Model, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically; returns the path."""
    path = Path(path)
    tensors = model.state_for_file()
    optim_meta = None
    if model.optimizer_state is not None:
        optim_meta = model.optimizer_state["param_groups"]
        for pid, state in model.optimizer_state["state"].items():
            for name, value in state.items():
                tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    net = model.net
    meta = {
        "format_version": FORMAT_VERSION,
        "network": {
            "in_channels": net.in_channels,
            "out_channels": net.out_channels,
            "features": net.features,
            "depth": net.depth,
        },
        "config": model.config.to_dict(),
        "summary": model.summary,
        "optimizer_param_groups": optim_meta,
    }
    data = safetensors_bytes(tensors, metadata={META_KEY: json.dumps(meta)})
    write_bytes_atomic(path, data)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a model file, without loading its tensors."""
    path = Path(path)
    with _open(path) as f:
        return _metadata(path, f.metadata())


def load_model(path: str | os.PathLike) -> Model:
    """Load a model saved by `save_model`."""
    path = Path(path)
    with _open(path) as f:
        meta = _metadata(path, f.metadata())
        try:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelFileError(
                f"{path}: tensors cannot be read ({exc}); the file is damaged."
            ) from exc
    try:
        net = UNet(**meta["network"])
        config = TrainConfig.from_dict(meta["config"])
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        mean, std = tensors["norm.mean"].numpy(), tensors["norm.std"].numpy()
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"{path}: the tensors do not match the network described in its metadata ({exc}). "
            "The file is damaged or was not written by napari-b2u."
        ) from exc
    if mean.shape != (net.in_channels,) or std.shape != (net.in_channels,):
        raise ModelFileError(f"{path}: normalisation does not match {net.in_channels} channel(s).")
    return Model(net, config, mean, std, meta.get("summary"), _optimizer_state(meta, tensors))


def _open(path: Path):
    if not path.is_file():
        raise ModelFileError(f"No model file at {path}.")
    try:
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{path} is not a valid safetensors model file ({exc}). "
            "Choose a model saved by napari-b2u (a .safetensors file)."
        ) from exc


def _metadata(path: Path, raw: dict[str, str] | None) -> dict[str, Any]:
    if not raw or META_KEY not in raw:
        raise ModelFileError(
            f"{path} is a safetensors file but not a napari-b2u model (no '{META_KEY}' metadata)."
        )
    try:
        meta = json.loads(raw[META_KEY])
        version = int(meta["format_version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: its napari-b2u metadata is unreadable ({exc}).") from exc
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer napari-b2u (model format {version}; this version "
            f"reads up to {FORMAT_VERSION}). Upgrade: pip install -U napari-b2u."
        )
    return meta


def _optimizer_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict | None:
    groups = meta.get("optimizer_param_groups")
    if not groups:
        return None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": groups}
