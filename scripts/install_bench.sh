#!/usr/bin/env bash
# Benchmark extras: bench_aggregate.py compares against Flower's Krum aggregation, which comes
# with the `flower` extra (flwr with its dependencies, pip's normal resolver).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install_flower.sh
