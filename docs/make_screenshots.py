"""Regenerate the screenshots in docs/images from a real napari viewer.

Run from the repository root under a (virtual) display:

    xvfb-run -a python docs/make_screenshots.py [--minutes 0.5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).parent / "images"


def wait(predicate, timeout=600.0):
    import time

    end = time.monotonic() + timeout
    while not predicate():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() > end:
            raise TimeoutError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=0.5)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)

    viewer = napari.Viewer(title="napari-b2u")
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-b2u", "noisy_stack")
    _, train = viewer.window.add_plugin_dock_widget("napari-b2u", "Train Blind2Unblind")
    train.image.value = viewer.layers["cells (noisy)"]
    train.minutes.value = args.minutes
    train.train_button.click()
    viewer.reset_view()
    wait(lambda: train.plot.n_points > 20 and "cells (noisy) [B2U preview]" in viewer.layers)
    viewer.screenshot(str(OUT / "train_widget_running.png"), canvas_only=False)
    wait(lambda: train.state == "idle")
    viewer.layers["cells (noisy) [B2U preview]"].visible = False
    viewer.layers["cells (noisy)"].visible = False
    viewer.screenshot(str(OUT / "train_widget_done.png"), canvas_only=False)

    viewer.window.remove_dock_widget("all")
    _, apply = viewer.window.add_plugin_dock_widget(
        "napari-b2u", "Denoise with Blind2Unblind model"
    )
    viewer.layers["cells (noisy) [B2U]"].visible = False
    viewer.layers["cells (noisy)"].visible = True
    QApplication.processEvents()
    viewer.screenshot(str(OUT / "denoise_widget.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
