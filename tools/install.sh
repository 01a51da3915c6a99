#!/usr/bin/env bash
# Create .venv (if missing) and install posebench with the given extras (e.g. `run`, `dev`).
#
# torch: setup.py asks for a range (torch>=2.4,<3). This script picks the build:
#   * a machine with an NVIDIA GPU (nvidia-smi works) gets PyPI's torch, which is a CUDA build on Linux;
#   * a machine without one gets a CPU build: a CPU wheel that pip can already see on disk (its find-links,
#     e.g. /opt/wheels here) if one satisfies the range, else PyTorch's CPU index.
#   Set POSEBENCH_TORCH=cuda|cpu to force one. An already installed torch in the range is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-run}"
range='torch>=2.4,<3'
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

have_torch() { .venv/bin/python - "$range" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
v = version('torch').split('+')[0].split('.')
sys.exit(0 if (2, 4) <= (int(v[0]), int(v[1])) < (3, 0) else 1)
PY
}

if ! have_torch; then
  want="${POSEBENCH_TORCH:-}"
  if [ -z "$want" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then want=cuda; else want=cpu; fi
  fi
  if [ "$want" = cuda ]; then
    echo "install.sh: GPU found: installing torch ($range) from PyPI (CUDA build)"
    "${pip[@]}" install "$range"
  else
    tmp=$(mktemp -d)
    if "${pip[@]}" download --no-index --no-deps -d "$tmp" "$range" >/dev/null 2>&1 && ls "$tmp"/torch-*+cpu-*.whl >/dev/null 2>&1; then
      whl=$(ls "$tmp"/torch-*+cpu-*.whl | head -n 1)
      echo "install.sh: no GPU: installing the CPU build on disk: $(basename "$whl")"
      "${pip[@]}" install "$whl"
    else
      echo "install.sh: no GPU: installing torch ($range) from PyTorch's CPU index"
      "${pip[@]}" install "$range" --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
    fi
    rm -rf "$tmp"
  fi
fi
"${pip[@]}" install -e ".[${extras}]"

# The dev extra's test suite checks the docs site in a real browser: Debian's chromium (never `playwright install`).
if [[ ",${extras}," == *,dev,* ]] && [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
    as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo -n)
    echo "install.sh: installing Debian's chromium for the docs browser test"
    "${as_root[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  else
    echo "install.sh: NOTE: no /usr/bin/chromium; the docs browser test will be SKIPPED. Install it with:"
    echo "    sudo apt-get install -y chromium fonts-dejavu-core"
  fi
fi
.venv/bin/python -c "import torch, posebench; print(f'install.sh: posebench {posebench.__version__}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}')"
