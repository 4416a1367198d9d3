"""Layer bookkeeping shared by the widgets: axes, plane under the cursor,
output and preview layers that keep the source's geometry."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_b2u.engine import Planes

#: Appended to the source layer's name for the denoised layer.
OUTPUT_SUFFIX = "[B2U]"


def image_layers(viewer) -> list:
    """The viewer's Image layers (what both widgets offer)."""
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image)]


def layer_data(layer) -> Any:
    """The full-resolution array of an image layer (multiscale: level 0)."""
    return layer.data[0] if layer.multiscale else layer.data


def guess_axes(layer) -> str:
    """Axes for a layer: RGB(A) -> ...YXC, otherwise a stack of YX planes."""
    ndim = layer_data(layer).ndim
    if layer.rgb:
        return _stack_letters(ndim - 3) + "YXC"
    return _stack_letters(ndim - 2) + "YX"


def _stack_letters(n: int) -> str:
    """``T`` for one stack axis, ``TZ`` for two, other letters before those."""
    return "TZ"[: max(n, 0)] if n <= 2 else "QRUVW"[: n - 2] + "TZ"


def describe(layer, axes: str) -> str:
    """One line about what training will see."""
    data = layer_data(layer)
    try:
        planes = Planes(data, axes)
    except (ValueError, TypeError) as exc:
        return f"{tuple(data.shape)} {data.dtype}: {exc}"
    kind = f"{planes.n} planes of" if planes.n > 1 else "one plane,"
    chans = f", {planes.channels} channels" if planes.channels > 1 else ""
    return f"{tuple(data.shape)} {data.dtype}: {kind} {planes.height}x{planes.width}{chans}"


def current_plane(layer, planes: Planes, world_point) -> int:
    """Index of the plane of ``planes`` shown at the viewer's current point."""
    if planes.n == 1:
        return 0
    coords = np.asarray(layer.world_to_data(world_point), dtype=float)
    where = []
    for dim, size in zip(planes.stack_dims, planes.stack_shape):
        value = coords[dim] if dim < len(coords) else 0.0
        where.append(int(np.clip(np.round(value), 0, size - 1)))
    return int(np.ravel_multi_index(where, planes.stack_shape))


def output_layer_kwargs(src, suffix: str, info: dict) -> dict:
    """Image-layer keyword arguments that keep ``src``'s geometry and metadata."""
    return {
        "name": f"{src.name} {suffix}",
        "scale": src.scale,
        "translate": src.translate,
        "rotate": src.rotate,
        "shear": src.shear,
        "affine": src.affine,
        "axis_labels": src.axis_labels,
        "units": src.units,
        "metadata": {**src.metadata, "b2u": info},
        "contrast_limits": src.contrast_limits,
        "colormap": src.colormap.name,
        "blending": src.blending,
        "rgb": src.rgb,
    }


def show_output(viewer, src, out: np.ndarray, model, mode: str):
    """Show ``out``, denoised from ``src`` by ``model``, as ``"<src> [B2U]"``
    with ``src``'s geometry and a ``b2u`` metadata entry."""
    info = {
        "config": model.config.to_dict(),
        "summary": model.summary,
        "mode": mode,
        "source": src.name,
    }
    return show_image(viewer, out, output_layer_kwargs(src, OUTPUT_SUFFIX, info))


def show_image(viewer, data: np.ndarray, kwargs: dict):
    """Put ``data`` in the layer named ``kwargs['name']``, adding it if needed."""
    name = kwargs["name"]
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.data.shape == data.shape:
            layer.data = data
            layer.metadata = kwargs.get("metadata", layer.metadata)
            return layer
        viewer.layers.remove(name)
    return viewer.add_image(data, **kwargs)


def preview_layer_kwargs(src, offset: tuple[int, int]) -> dict:
    """A 2D layer placed over the crop at ``offset`` of the source's current plane."""
    scale = np.asarray(src.scale)[-2:]
    translate = np.asarray(src.translate)[-2:] + np.asarray(offset) * scale
    return {
        "name": f"{src.name} [B2U preview]",
        "scale": scale,
        "axis_labels": tuple(src.axis_labels)[-2:],
        "units": tuple(src.units)[-2:],
        "translate": translate,
        "contrast_limits": src.contrast_limits,
        "colormap": src.colormap.name,
        "rgb": src.rgb,
    }
