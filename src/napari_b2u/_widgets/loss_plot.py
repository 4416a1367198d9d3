"""Live loss plot (pyqtgraph): appends points, redraws at most 10 times a second.

By default it shows a quantity that falls as the model gets better:
``L_rev / (lambda + 1)**2``, the mean squared difference between the
weighted output ``(blind + lambda * visible) / (lambda + 1)`` and the noisy
input. The raw terms (total, L_rev, L_reg) are a click away; they rise by
construction while lambda ramps from 2 to 20 (L_rev scales with
``(lambda + 1)**2``: 9 -> 441), which reads as an alarm in a good run.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from napari_b2u.engine.events import fit_loss

SMOOTH_WINDOW = 15  # points in the running median of the plotted loss

#: key -> (legend, colour, width, raw term?)
_CURVES = {
    "progress": ("L_rev / (λ+1)²", (150, 200, 255), 1, False),
    "smooth": ("L_rev / (λ+1)², smoothed", (255, 255, 255), 3, False),
    "loss": ("total (raw)", (200, 200, 200), 1, True),
    "l_rev": ("L_rev (raw)", (90, 160, 255), 1, True),
    "l_reg": ("L_reg (raw)", (255, 170, 60), 1, True),
}
EXPLAIN = (
    "Difference between the model's output and the noisy image (L_rev / (λ+1)²): it falls "
    "while the model learns and levels off near the noise level. The raw loss terms rise "
    "with λ (dashed, right axis) by design."
)


class LossPlot(QWidget):
    """Loss curves per step on a log axis, lambda on a second axis."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(180)
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss")
        item.setLogMode(y=True)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.addLegend(offset=(-5, 5))
        self.curves = {
            key: item.plot([], [], name=name, pen=pg.mkPen(color, width=width))
            for key, (name, color, width, _) in _CURVES.items()
        }
        # lambda on its own right-hand axis
        self.lam_box = pg.ViewBox()
        item.showAxis("right")
        item.scene().addItem(self.lam_box)
        item.getAxis("right").linkToView(self.lam_box)
        item.getAxis("right").setLogMode(False)
        item.getAxis("right").setLabel("lambda", color="#8f8")
        self.lam_box.setXLink(item)
        self.lam_curve = pg.PlotCurveItem(pen=pg.mkPen((120, 230, 120), style=Qt.PenStyle.DashLine))
        self.lam_box.addItem(self.lam_curve)
        item.vb.sigResized.connect(self._sync_views)

        self.explain = QLabel(EXPLAIN)
        self.explain.setWordWrap(True)
        self.raw = QCheckBox("show the raw loss terms")
        self.raw.toggled.connect(self._show_raw)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        layout.addWidget(self.explain)
        layout.addWidget(self.raw)
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._redraw)
        self._show_raw(False)
        self.clear()

    def clear(self) -> None:
        """Forget all points (a new run starts)."""
        self.data: dict[str, list[float]] = {k: [] for k in (*_CURVES, "step", "lam")}
        self._dirty = True
        self._redraw()

    def append(self, step: int, loss: float, l_rev: float, l_reg: float, lam: float) -> None:
        """Add one point; the redraw happens on the timer."""
        d = self.data
        progress = fit_loss(l_rev, lam)
        # a running median ignores the spikes of the first steps, unlike a mean
        smooth = float(np.median(d["progress"][-(SMOOTH_WINDOW - 1) :] + [progress]))
        for key, value in zip(
            ("step", "loss", "l_rev", "l_reg", "progress", "smooth", "lam"),
            (step, loss, l_rev, l_reg, progress, smooth, lam),
        ):
            d[key].append(float(value))
        self._dirty = True
        if not self._timer.isActive():
            self._timer.start()

    @property
    def n_points(self) -> int:
        return len(self.data["step"])

    def _show_raw(self, raw: bool) -> None:
        for key, (_, _, _, is_raw) in _CURVES.items():
            self.curves[key].setVisible(raw if is_raw else True)

    def _redraw(self) -> None:
        if not self._dirty:
            self._timer.stop()
            return
        self._dirty = False
        x = np.asarray(self.data["step"])
        for key, curve in self.curves.items():
            y = np.asarray(self.data[key])
            ok = y > 0  # log axis
            curve.setData(x[ok], y[ok])
        self.lam_curve.setData(x, np.asarray(self.data["lam"]))

    def _sync_views(self) -> None:
        self.lam_box.setGeometry(self.plot.getPlotItem().vb.sceneBoundingRect())
        self.lam_box.linkedViewChanged(self.plot.getPlotItem().vb, self.lam_box.XAxis)
