#!/usr/bin/env bash
# Install napari-b2u from this checkout into the current Python.
#   bash scripts/install.sh           the plugin, napari and a Qt binding
#   bash scripts/install.sh testing   also the test tools, and (as root on Debian/Ubuntu)
#                                     the Xvfb/GL/xcb system packages the GUI tests need
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extra=${1:-all}

if [ "$extra" = testing ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
        libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xinput0 \
        libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 >/dev/null
fi

# Install torch first when it is missing: left to the resolver, a plain `torch`
# requirement pulls a multi-GB CUDA build. 2.13.0 is the tested release.
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    "$PYTHON" -m pip install --disable-pip-version-check -q "torch==2.13.0"
fi
"$PYTHON" -m pip install --disable-pip-version-check -q -e ".[$extra]"
