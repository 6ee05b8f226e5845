#!/usr/bin/env bash
# The `flower` extra: flwr (exactly pinned) with its dependencies, through pip's normal resolver,
# for `fedmarket trainer run --flower-client MODULE:ATTR`. flwr's pins lower typer, rich,
# fastapi, uvicorn and starlette within fedmarket's open ranges. Run after ./scripts/install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install --quiet -e ".[dev,flower]"
