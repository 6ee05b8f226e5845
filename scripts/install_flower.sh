#!/usr/bin/env bash
# The `flower` extra: flwr (exactly pinned) with its dependencies, through pip's normal resolver,
# for `fedmarket trainer run --flower-client MODULE:ATTR`. flwr's pins lower typer, rich,
# fastapi, uvicorn and starlette within fedmarket's open ranges. Run after ./scripts/install.sh.
#
# VENV=.venv-flower ./scripts/install_flower.sh makes a separate environment with the extra
# (what CI does: the main suite keeps running on the default install, and scripts/test.sh runs
# the Flower tests in .venv-flower when it exists).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  PYTHON="${PYTHON:-python3.11}"
  command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch first and pinned exactly: an open range would pull the CUDA build (GBs).
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
fi
"$VENV/bin/python" -m pip install --quiet -e ".[dev,flower]"
"$VENV/bin/python" -m pip check
