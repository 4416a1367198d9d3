"""Model files: safetensors tensors plus one JSON metadata entry.

This module reads and writes tensors and metadata and knows nothing of
`Model` (which says what its tensors and metadata are). Loading never
unpickles anything: safetensors holds raw tensors only, and every way a file
can be wrong ends in a `ModelFileError` that names the file and the problem.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from napari_b2u.engine.atomic import write_bytes_atomic

#: Newest format this version reads and writes. A file gets the lowest version
#: that describes it, so older napari-b2u versions still read what they can:
#: 1: the original format; 2: adds ``subsample`` (decorrelated models);
#: 3: adds 3D networks (``network.dims``, ``network.z_pool``).
FORMAT_VERSION = 3
META_KEY = "napari_b2u"


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or not a napari-b2u model."""


def write_model_file(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write ``tensors`` and the JSON ``meta`` to ``path`` atomically; returns the path."""
    path = Path(path)
    data = safetensors_bytes(tensors, metadata={META_KEY: json.dumps(meta)})
    write_bytes_atomic(path, data)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a model file, without loading its tensors."""
    path = Path(path)
    with _open(path) as f:
        return _metadata(path, f.metadata())


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, metadata)`` of a model file written by `write_model_file`."""
    path = Path(path)
    with _open(path) as f:
        meta = _metadata(path, f.metadata())
        try:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelFileError(
                f"{path}: tensors cannot be read ({exc}); the file is damaged."
            ) from exc
    return tensors, meta


def read_model_bytes(data: bytes, source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`read_model_file` for a model file's bytes (e.g. from inside a zip)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(data)
        try:
            return read_model_file(path)
        except ModelFileError as exc:
            raise ModelFileError(str(exc).replace(str(path), source)) from exc


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
