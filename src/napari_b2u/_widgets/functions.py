"""Plain functions for napari's command palette, scripts and pipelines.

Contributed in ``napari.yaml`` as npe2 commands (and as function widgets):
an image layer in, a ``LayerDataTuple`` out, so they chain in
napari-workflows / napari-assistant style pipelines and run from a script
through npe2's plugin manager::

    from npe2 import PluginManager
    data, kwargs, kind = PluginManager.instance().commands.execute(
        "napari-b2u.denoise_layer", kwargs={"image": layer, "model_file": "m.safetensors"}
    )

No logic of their own: they call `napari_b2u.api`. The output keeps the
source's geometry and metadata, like the widgets' results.
"""


from pathlib import Path
from typing import Any, Literal

from napari.layers import Image
from napari.types import LayerDataTuple

from napari_b2u import api
from napari_b2u._widgets.layers import (
    OUTPUT_SUFFIX,
    guess_axes,
    layer_data,
    output_layer_info,
    output_layer_kwargs,
)


def denoise_layer(
    image: Image,
    model_file: Path,
    axes: str = "",
    mode: Literal["model default", "visible", "weighted", "blind"] = "model default",
) -> LayerDataTuple:
    """Denoise an image layer with a saved Blind2Unblind model.

    Parameters
    ----------
    image : Image
        The layer to denoise (never changed).
    model_file : Path
        A ``.safetensors`` model saved by napari-b2u.
    axes : str
        One letter per dimension (``""``: guessed from the layer).
    mode : str
        ``"model default"``, ``"visible"``, ``"weighted"`` or ``"blind"``.

    Returns
    -------
    LayerDataTuple
        ``(denoised, layer kwargs, "image")``, named ``"<name> [B2U]"``.
    """
    model = api.load_model(model_file)
    return _result(image, model, axes, None if mode == "model default" else mode)


def train_and_denoise(
    image: Image,
    seconds: float = 60.0,
    axes: str = "",
) -> LayerDataTuple:
    """Train Blind2Unblind on an image layer for a time budget and denoise it.

    Parameters
    ----------
    image : Image
        The noisy layer (never changed).
    seconds : float
        Training time budget in seconds.
    axes : str
        One letter per dimension (``""``: guessed from the layer).

    Returns
    -------
    LayerDataTuple
        ``(denoised, layer kwargs, "image")``, named ``"<name> [B2U]"``.
    """
    model = api.train(layer_data(image), axes=axes or guess_axes(image), time_budget=seconds)
    return _result(image, model, axes, None)


def _result(image: Image, model: Any, axes: str, mode: str | None) -> LayerDataTuple:
    mode = mode or model.config.mode
    out = model.denoise(layer_data(image), axes=axes or guess_axes(image, model.spatial_dims), mode=mode)
    kwargs = output_layer_kwargs(image, OUTPUT_SUFFIX, output_layer_info(image, model, mode))
    return out, kwargs, "image"
