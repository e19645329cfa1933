#!/usr/bin/env bash
# Set up ramlab in ./.venv: PyTorch, then ramlab with its dev tools.
# Override the interpreter with PYTHON=..., the torch requirement with TORCH_SPEC=...
# The pinned torch is a CPU build where pip's index serves one (this project's machines);
# from PyPI on Linux it is the CUDA build: for a CPU one, run with
# PIP_INDEX_URL=https://download.pytorch.org/whl/cpu PIP_EXTRA_INDEX_URL=https://pypi.org/simple
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Install torch first, pinned, so resolving ramlab's `torch>=2.1` installs nothing more
# (an unpinned torch would pull the newest release, a multi-GB CUDA build).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q "$TORCH_SPEC"
fi
.venv/bin/pip install -q -e ".[dev]"
.venv/bin/ramlab --version
