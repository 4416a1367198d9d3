#!/usr/bin/env bash
# Release check: install the plugin the way napari users do and use it.
#   1. a fresh venv, `pip install "napari[pyqt6]"`, then this package with no extras
#      (what napari's plugin manager does): both widgets open in a real viewer
#      under Xvfb, train, denoise and add their layers (scripts/napari_smoke.py);
#   2. a fresh venv with only this package (a headless server): no Qt binding is
#      installed, the API and the CLI work.
# Usage: bash scripts/check_napari_install.sh [WORKDIR]   (default: a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=${1:-$(mktemp -d)}
pip_q() { "$1/bin/python" -m pip install --disable-pip-version-check -q "${@:2}"; }

echo "== napari way: $work/napari"
"$PYTHON" -m venv "$work/napari"
pip_q "$work/napari" "torch==2.13.0"   # the local CPU build; see README
pip_q "$work/napari" "napari[pyqt6]"
pip_q "$work/napari" .
"$work/napari/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -iE "^(napari|napari-b2u|pyqt6|pyqtgraph|pytest) " || true
xvfb-run -a "$work/napari/bin/python" scripts/napari_smoke.py

echo "== headless server: $work/headless"
"$PYTHON" -m venv "$work/headless"
pip_q "$work/headless" "torch==2.13.0"
pip_q "$work/headless" .
if "$work/headless/bin/python" -c "import qtpy.QtCore" 2>/dev/null; then
    echo "FAIL: pip install napari-b2u installed a Qt binding"; exit 1
fi
"$work/headless/bin/napari-b2u" demo --out "$work/demo" --time-budget 5 -q
"$work/headless/bin/napari-b2u" demo --gui 2>&1 | tee "$work/gui.log" || true
grep -q "pip install" "$work/gui.log"
echo "napari-way and headless installs: OK"
