#!/usr/bin/env bash
# Benchmark-only extras. flwr is installed without its dependencies: its pins would downgrade
# fastapi, typer, rich and uvicorn; bench_aggregate.py only imports its Krum aggregation.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install --quiet --no-deps "flwr==1.42.0"
.venv/bin/python -m pip install --quiet protobuf grpcio cryptography iterators
