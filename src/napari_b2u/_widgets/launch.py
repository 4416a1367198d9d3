"""``napari-b2u demo --gui``: napari with the noisy sample and the Train widget."""

from __future__ import annotations


def open_demo_viewer(run: bool = True):
    """Open a viewer with the noisy camera sample and the Train widget docked."""
    import napari

    viewer = napari.Viewer(title="napari-b2u demo")
    viewer.open_sample("napari-b2u", "noisy_camera")
    viewer.window.add_plugin_dock_widget("napari-b2u", "Train Blind2Unblind")
    if run:
        napari.run()
    return viewer
