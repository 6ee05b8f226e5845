#!/usr/bin/env bash
# The test command: lint and format check, then the whole suite (contracts, math, adapters, CLI, end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
# The Flower tests with a real flwr, in the environment that has the `flower` extra
# (VENV=.venv-flower ./scripts/install_flower.sh); elsewhere they skip.
if [ -x .venv-flower/bin/python ] && [ "$#" -eq 0 ]; then
  .venv-flower/bin/python -m pytest -q tests/cli/test_flower.py tests/trainer \
    "tests/aggregator/test_robust.py::test_multi_krum_against_flower_if_installed"
fi
.venv/bin/python -m pytest -q "$@"
