"""Layer bookkeeping shared by the widgets: axes, plane under the cursor,
output and preview layers that keep the source's geometry."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_b2u.engine import Planes

#: Appended to the source layer's name for the denoised layer.
OUTPUT_SUFFIX = "[B2U]"
#: ... and for the residual (noisy - denoised).
RESIDUAL_SUFFIX = "[B2U residual]"


def image_layers(viewer) -> list:
    """The viewer's Image layers (what both widgets offer)."""
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image)]


def layer_data(layer) -> Any:
    """The full-resolution array of an image layer (multiscale: level 0)."""
    return layer.data[0] if layer.multiscale else layer.data


def guess_axes(layer, spatial_dims: int = 2) -> str:
    """Axes for a layer: its axis labels when they are axis letters (``("z",
    "y", "x")`` -> ``ZYX``); else RGB(A) -> ...YXC, otherwise a stack of YX planes,
    or for a volume model (``spatial_dims=3``) a z-stack: one stack axis is Z."""
    ndim = layer_data(layer).ndim
    labels = "".join(str(a).upper() for a in getattr(layer, "axis_labels", ()))
    wanted = ndim - 1 if layer.rgb else ndim
    if len(labels) == wanted and len(set(labels)) == wanted and labels.endswith("YX"):
        if set(labels) <= set("TZCYX"):
            return labels + ("C" if layer.rgb else "")
    if layer.rgb:
        return _stack_letters(ndim - 3, spatial_dims) + "YXC"
    return _stack_letters(ndim - 2, spatial_dims) + "YX"


def _stack_letters(n: int, spatial_dims: int = 2) -> str:
    """``T`` for one stack axis (``Z`` for volumes), ``TZ`` for two, other
    letters before those."""
    if n == 1 and spatial_dims == 3:
        return "Z"
    return "TZ"[: max(n, 0)] if n <= 2 else "QRUVW"[: n - 2] + "TZ"


def describe(layer, axes: str, spatial_dims: int = 2) -> str:
    """One line about what training will see."""
    data = layer_data(layer)
    try:
        planes = Planes(data, axes, spatial_dims)
    except (ValueError, TypeError) as exc:
        return f"{tuple(data.shape)} {data.dtype}: {exc}"
    noun = "volume" if spatial_dims == 3 else "plane"
    kind = f"{planes.n} {noun}s of" if planes.n > 1 else f"one {noun},"
    size = "x".join(map(str, planes.spatial_shape))
    chans = f", {planes.channels} channels" if planes.channels > 1 else ""
    return f"{tuple(data.shape)} {data.dtype}: {kind} {size}{chans}"


def current_plane(layer, planes: Planes, world_point) -> tuple[int, int | None]:
    """Index of the plane (volume) of ``planes`` shown at the viewer's current
    point, and for volumes the Z slice shown (else None)."""
    coords = np.asarray(layer.world_to_data(world_point), dtype=float)

    def at(dim: int, size: int) -> int:
        value = coords[dim] if dim < len(coords) else 0.0
        return int(np.clip(np.round(value), 0, size - 1))

    z = at(planes.axes.index("Z"), planes.depth) if planes.spatial_dims == 3 else None
    if planes.n == 1:
        return 0, z
    where = [at(dim, size) for dim, size in zip(planes.stack_dims, planes.stack_shape)]
    return int(np.ravel_multi_index(where, planes.stack_shape)), z


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


def output_layer_info(src, model, mode: str) -> dict:
    """The ``b2u`` metadata entry of a result: settings, summary, mode, source."""
    return {
        "config": model.config.to_dict(),
        "summary": model.summary.to_dict(),
        "subsample": list(model.subsample),
        "mode": mode,
        "source": src.name,
    }


def show_output(viewer, src, out: np.ndarray, model, mode: str):
    """Show ``out``, denoised from ``src`` by ``model``, as ``"<src> [B2U]"``
    with ``src``'s geometry and a ``b2u`` metadata entry."""
    info = output_layer_info(src, model, mode)
    return show_image(viewer, out, output_layer_kwargs(src, OUTPUT_SUFFIX, info))


def show_residual(viewer, src, out: np.ndarray, noise_std: float | None = None):
    """Show ``src - out`` as ``"<src> [B2U residual]"``: the source's geometry,
    a diverging colormap centred on 0, limits +-3 noise levels."""
    from napari.utils import Colormap

    data = layer_data(src)
    noisy = data if isinstance(data, np.ndarray) else np.asarray(data)
    residual = noisy.astype(np.float32) - out
    if src.rgb:  # negative values cannot be shown as RGB: the channels' mean
        residual = residual.mean(axis=-1)
    if noise_std is None or not np.isfinite(noise_std) or noise_std <= 0:
        noise_std = float(np.percentile(np.abs(residual), 99)) / 3 or 1.0
    kwargs = output_layer_kwargs(src, RESIDUAL_SUFFIX, {"source": src.name})
    kwargs.update(
        colormap=Colormap(DIVERGING, name="b2u residual"),
        contrast_limits=(-3 * noise_std, 3 * noise_std),
        blending="translucent",
        rgb=False,
    )
    return show_image(viewer, residual, kwargs)


#: Blue, grey, red (matplotlib's coolwarm ends and middle): negative, 0, positive.
DIVERGING = [[0.23, 0.30, 0.75, 1.0], [0.87, 0.87, 0.87, 1.0], [0.71, 0.02, 0.15, 1.0]]


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


def ask_package_path(parent, name: str) -> str | None:
    """A file dialog for a bioimage.io package; None when cancelled."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getSaveFileName(
        parent, "Export to bioimage.io", f"{name}.zip", "bioimage.io package (*.zip)"
    )
    return path or None
