#!/usr/bin/env bash
# Builds the virtual environment the `careamics` benchmark method runs in
# (CAREamics 0.3.5, Noise2Void), next to the CPU torch 2.13.0 build.
#
#   bash benchmarks/careamics_env.sh [VENV]    # default: .venv-careamics
#
# A plain `pip install careamics` back-tracks for many minutes (it pins
# torchvision<=0.26, which needs an older torch) and may pull a CUDA torch.
# So: torch 2.13.0 first, the matching torchvision 0.28.0 under a constraint,
# careamics without its pins, then its requirements by hand. The only
# torchvision 0.28.0 wheel available here is a CUDA build whose compiled ops
# do not load beside CPU torch; N2V uses no torchvision op, so its op
# registrations are skipped when the ops are missing. Benchmarks only: the
# package never imports careamics.
set -euo pipefail
VENV=${1:-.venv-careamics}
python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
CONS=$(mktemp)
printf 'torch==2.13.0\ntorchvision==0.28.0\n' > "$CONS"
"$PIP" install -q --upgrade pip
"$PIP" install -q torch==2.13.0
"$PIP" install -q -c "$CONS" torchvision==0.28.0
"$PIP" install -q --no-deps careamics==0.3.5
"$PIP" install -q -c "$CONS" 'bioimageio-core>=0.9.0,<=0.11.0' 'lightning>=2.2,<=2.6.6,!=2.6.2,!=2.6.3' \
    'matplotlib<=3.11.2' 'microssim<=0.0.5' 'numpy>=1.21,<=2.4.6' 'pillow<=13.0.0' 'psutil<=7.2.2' \
    'pydantic>=2.11,<=2.14.1' 'pyyaml<=6.0.3,!=6.0.0' 'scikit-image<=0.26.0' 'tifffile<=2026.3.3' \
    'torchmetrics>0.7.0,<1.9.0' 'zarr>=3.0.0,<4.0.0'
"$VENV/bin/python" - <<'PY'
import pathlib, sysconfig
init = pathlib.Path(sysconfig.get_paths()["purelib"]) / "torchvision" / "__init__.py"
text = init.read_text()
old = "from torchvision import (\n    _autograd_registrations,\n    _meta_registrations,\n"
new = ("if extension._has_ops():\n    from torchvision import _autograd_registrations, _meta_registrations  # noqa: F401\n"
       "from torchvision import (\n")
if old in text:
    init.write_text(text.replace(old, new))
PY
"$VENV/bin/python" -c "import careamics, torch; print('careamics', careamics.__version__, 'torch', torch.__version__)"
rm -f "$CONS"
