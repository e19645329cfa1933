#!/usr/bin/env bash
# Set up ramlab in ./.venv: a CPU build of PyTorch, then ramlab with its dev tools.
# Override the interpreter with PYTHON=..., the torch requirement with TORCH_SPEC=...
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Install torch first, pinned, so resolving ramlab's `torch>=2.1` installs nothing more
# (an unpinned torch would pull a multi-GB CUDA build on a CPU-only machine).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q "$TORCH_SPEC"
fi
.venv/bin/pip install -q -e ".[dev]"
.venv/bin/ramlab --version
