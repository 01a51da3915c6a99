#!/usr/bin/env bash
# Create .venv (if missing) and install posebench with the given extras (e.g. `run`, `dev`).
#
# torch: setup.py asks for a range (torch>=2.4,<3). An already installed torch in the range is kept. Otherwise:
#   * a machine with an NVIDIA GPU (nvidia-smi works) gets torch from pip's configured index (PyPI's is a CUDA
#     build on Linux);
#   * a machine without one gets a CPU build that pip can already see on disk (a torch-*+cpu wheel in its
#     find-links) if one satisfies the range, else torch from pip's configured index, as above: it runs on the CPU
#     too, but on Linux it is the large CUDA build.
#   Set POSEBENCH_TORCH=cuda|cpu to force one branch. This script names no package index. For the smaller CPU-only
#   build, first create .venv (python3 -m venv .venv) and install torch's CPU build into it from PyTorch's CPU wheel
#   index (the pip command for your platform is on pytorch.org's "Get started" page), then run this script: it keeps
#   that torch.
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
    echo "install.sh: GPU found: installing torch ($range) from pip's configured index (PyPI's is a CUDA build on Linux)"
    "${pip[@]}" install "$range"
  else
    tmp=$(mktemp -d)
    if "${pip[@]}" download --no-index --no-deps -d "$tmp" "$range" >/dev/null 2>&1 && ls "$tmp"/torch-*+cpu-*.whl >/dev/null 2>&1; then
      whl=$(ls "$tmp"/torch-*+cpu-*.whl | head -n 1)
      echo "install.sh: no GPU: installing the CPU build on disk: $(basename "$whl")"
      "${pip[@]}" install "$whl"
    else
      echo "install.sh: no GPU and no CPU wheel on disk: installing torch ($range) from pip's configured index"
      echo "install.sh: (for the smaller CPU-only build instead: install it into .venv from PyTorch's CPU wheel index, see"
      echo "install.sh:  pytorch.org's \"Get started\" page, then run this script again: an installed torch in range is kept)"
      "${pip[@]}" install "$range"
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
