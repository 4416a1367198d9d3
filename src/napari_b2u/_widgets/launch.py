"""``napari-b2u demo --gui``: napari with the noisy sample and the Train widget."""

from __future__ import annotations

#: What to run when napari or its Qt binding is missing.
INSTALL_NAPARI = (
    "napari-b2u demo --gui needs napari with a Qt binding, which are not installed here: "
    'run  pip install "napari[all]"  (or  pip install "napari-b2u[all]"), then try again. '
    "Without a GUI, `napari-b2u demo` runs the same demo on the command line."
)


def open_demo_viewer(run: bool = True):
    """Open a viewer with the noisy camera sample and the Train widget docked.

    Raises ``ImportError`` saying what to install when napari or a Qt binding
    is missing.
    """
    try:
        import napari
        from qtpy import QtCore  # noqa: F401  (fails when there is no Qt binding)
    except ImportError as exc:
        raise ImportError(f"{INSTALL_NAPARI} ({exc})") from exc

    viewer = napari.Viewer(title="napari-b2u demo")
    viewer.open_sample("napari-b2u", "noisy_camera")
    viewer.window.add_plugin_dock_widget("napari-b2u", "Train Blind2Unblind")
    if run:
        napari.run()
    return viewer
