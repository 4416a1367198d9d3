"""Regenerate the screenshots in docs/images from a real napari viewer.

Run from the repository root under a (virtual) display:

    xvfb-run -a python docs/make_screenshots.py [--minutes 0.5]

The results are shown the way to judge them: noisy and denoised side by
side (napari's grid mode) at a zoom where the difference can be seen, and
the residual.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import napari

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from napari_smoke import wait_until  # noqa: E402

OUT = Path(__file__).parent / "images"
NOISY, DENOISED = "cells (noisy)", "cells (noisy) [B2U]"


def grid(viewer):
    """The grid settings (``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def side_by_side(viewer, names: list[str], zoom: float) -> None:
    """Only ``names`` (the other layers removed), in a grid, zoomed on the centre."""
    for name in [layer.name for layer in viewer.layers if layer.name not in names]:
        viewer.layers.remove(name)
    for layer in viewer.layers:
        layer.visible = True
    grid(viewer).enabled = True
    grid(viewer).shape = (1, len(names))
    settle()
    viewer.reset_view()
    settle()
    viewer.camera.zoom *= zoom
    settle()


def settle() -> None:
    """Let the canvas apply a change before the next one (an event-loop pass)."""
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=0.5)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)

    viewer = napari.Viewer(title="napari-b2u")
    viewer.window.resize(1900, 1000)
    viewer.open_sample("napari-b2u", "noisy_stack")
    _, train = viewer.window.add_plugin_dock_widget("napari-b2u", "Train Blind2Unblind")
    train.image.value = viewer.layers[NOISY]
    train.minutes.value = args.minutes
    wait_until(lambda: train.noise is not None, "the noise check")
    train.train_button.click()
    viewer.reset_view()
    wait_until(
        lambda: train.plot.n_points > 20 and f"{NOISY} [B2U preview]" in viewer.layers,
        "the loss plot and the preview",
    )
    viewer.screenshot(str(OUT / "train_widget_running.png"), canvas_only=False)
    wait_until(lambda: train.state == "idle" and DENOISED in viewer.layers, "the result")
    side_by_side(viewer, [NOISY, DENOISED], zoom=2.0)
    viewer.screenshot(str(OUT / "train_widget_done.png"), canvas_only=False)
    train.residual_button.click()
    side_by_side(viewer, [NOISY, f"{NOISY} [B2U residual]"], zoom=2.0)
    viewer.screenshot(str(OUT / "train_widget_residual.png"), canvas_only=False)

    viewer.window.remove_dock_widget("all")
    _, apply = viewer.window.add_plugin_dock_widget(
        "napari-b2u", "Denoise with Blind2Unblind model"
    )
    grid(viewer).enabled = False
    for layer in viewer.layers:
        layer.visible = layer.name == NOISY
    viewer.reset_view()
    viewer.screenshot(str(OUT / "denoise_widget.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
