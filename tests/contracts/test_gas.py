"""Gas: batched postRound vs one trainer per transaction (gas is exact, so deterministic)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

# Measured with 20 trainers x 2 rounds (scripts/bench_gas.py --trainers 20 --rounds 2):
# batched 14_248 gas per trainer; the bound below is that figure + 10% headroom.
BATCHED_PER_TRAINER_BOUND = 15_673


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_gas.py"
    spec = importlib.util.spec_from_file_location("bench_gas", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_run() -> dict:
    return _bench().run_bench(trainers=20, rounds=2)


def test_batched_post_saves_at_least_60_percent(small_run: dict) -> None:
    assert small_run["saving"] >= 0.60, small_run


def test_batched_post_gas_bound(small_run: dict) -> None:
    assert small_run["batched_post_gas_per_trainer"] <= BATCHED_PER_TRAINER_BOUND, small_run
