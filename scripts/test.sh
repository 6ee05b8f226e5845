#!/usr/bin/env bash
# The test command: lint and format check, then the whole suite (contracts, math, adapters, CLI, end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
.venv/bin/python -m pytest -q "$@"
