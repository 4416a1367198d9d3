"""Use the plugin as a napari user would, in a real viewer, and exit 0 if it all works.

Opens both samples and both dock widgets, trains a tiny model on the noisy
camera through the Train widget, applies it to the noisy stack through the
Denoise widget, and checks that both outputs arrive as layers with their
source's geometry. Needs a display (run it under ``xvfb-run -a`` on a server).

It imports nothing but napari, Qt and this package, so it runs in an
environment made the napari way (``scripts/check_napari_install.sh``: napari
with a Qt binding, then this package without extras); the test suite runs it
with every package outside that set hidden (tests/test_dependencies.py).
"""

from __future__ import annotations

import sys

TIMEOUT_MS = 240_000


def wait_until(condition, what: str, timeout_ms: int = TIMEOUT_MS) -> None:
    """Run the Qt event loop until ``condition()`` is true (checked every 20 ms)."""
    from qtpy.QtCore import QEventLoop, QTimer

    if condition():
        return
    loop, poll, deadline = QEventLoop(), QTimer(), QTimer()
    poll.timeout.connect(lambda: condition() and loop.quit())
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    poll.start(20)
    deadline.start(timeout_ms)
    loop.exec()
    poll.stop()
    if not condition():
        raise TimeoutError(f"timed out after {timeout_ms / 1000:.0f} s waiting for {what}")


def main() -> int:
    import napari
    import numpy as np

    viewer = napari.Viewer(show=False)
    viewer.open_sample("napari-b2u", "noisy_camera")
    viewer.open_sample("napari-b2u", "noisy_stack")
    _, train = viewer.window.add_plugin_dock_widget("napari-b2u", "Train Blind2Unblind")
    _, apply = viewer.window.add_plugin_dock_widget(
        "napari-b2u", "Denoise with Blind2Unblind model"
    )

    train.image.value = viewer.layers["camera (noisy)"]
    train.device.value = "cpu"
    for name, value in dict(depth=2, features=8, patch_size=32, batch_size=2, steps=20).items():
        train.advanced[name].value = value
    train.train_button.click()
    wait_until(lambda: "camera (noisy) [B2U]" in viewer.layers, "the Train widget's output")
    wait_until(lambda: train.state == "idle", "the Train widget to finish")
    print(f"train widget: {train.status.text()}")
    assert train.plot.n_points > 0, f"no live loss plot: {getattr(train.plot, 'text', str)()}"

    apply.reset_choices()
    apply.image.value = viewer.layers["cells (noisy)"]
    apply.device.value = "cpu"
    apply.run_button.click()
    wait_until(lambda: "cells (noisy) [B2U]" in viewer.layers, "the Denoise widget's output")
    print(f"denoise widget: {apply.status.text()}")

    for name in ("camera (noisy)", "cells (noisy)"):
        src, out = viewer.layers[name], viewer.layers[f"{name} [B2U]"]
        assert out.data.shape == src.data.shape, (name, out.data.shape)
        assert np.isfinite(out.data).all(), name
        np.testing.assert_array_equal(out.scale, src.scale)
    # the manifest's two function widgets open too (magicgui builds them from their signatures)
    for title in (
        "Denoise a layer with a model file (function)",
        "Train and denoise a layer (function)",
    ):
        _, widget = viewer.window.add_plugin_dock_widget("napari-b2u", title)
        assert widget is not None, title
        print(f"opened: {title}")
    viewer.close()
    print("napari smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
