"""The scale simulation (issue 16): a fleet's training on either engine gives the same bytes,
a job larger than 256 trainers settles through `settle` calls end to end, and the round's time
is split into parts that add up."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from backend.cli.main import app
from backend.core.datasets import load_dataset, sample_shards, split_train_validation_test
from backend.core.errors import DataError
from backend.core.jobspec import TrainingSpec
from backend.core.models import ModelSpec, build_model, get_weights
from backend.simulation.fleet import LocalEngine, TrainTask, make_engine
from backend.simulation.scale import SPLIT, ScaleConfig, run_scale


@pytest.fixture(scope="module")
def shards() -> list:
    train, _, _ = split_train_validation_test(load_dataset("mnist"), seed=0)
    return sample_shards(train, 12, 32, seed=0)


def test_ray_and_local_engines_train_the_same_bytes(shards: list) -> None:
    spec = ModelSpec(family="mlp", input_dim=784, hidden=[16], seed=0)
    training = TrainingSpec(local_epochs=1, lr=0.1)
    weights = get_weights(build_model(spec))
    tasks = [TrainTask(i, 1_000_003 * i + 1) for i in range(len(shards))]
    local = LocalEngine()
    local.load(spec, training, shards)
    expected = local.train(weights, tasks)
    ray_engine = make_engine("ray", num_cpus=2)
    try:
        ray_engine.load(spec, training, shards)
        got = ray_engine.train(weights, tasks)
    finally:
        ray_engine.close()
    assert len(got) == len(expected)
    for (w_ray, loss_ray), (w_local, loss_local) in zip(got, expected, strict=True):
        assert loss_ray == loss_local
        assert all(np.array_equal(w_ray[k], w_local[k]) for k in w_local)
    first = next(iter(weights))
    assert not np.array_equal(expected[0][0][first], expected[1][0][first])


def test_shards_drawn_for_a_large_fleet_overlap_but_differ(shards: list) -> None:
    assert all(len(s) == 32 for s in shards)
    assert not np.array_equal(shards[0].x, shards[1].x)
    with pytest.raises(DataError, match="rows per trainer"):
        sample_shards(shards[0], 2, 33)


def test_a_job_of_more_than_256_trainers_runs_and_settles_end_to_end() -> None:
    result = run_scale(ScaleConfig(trainers=260, rounds=1, rows_per_trainer=16))
    assert (result.trainers, result.rounds, len(result.round_s)) == (260, 1, 1)
    assert set(result.split_s) == set(SPLIT)
    # exclusive times: the parts of a round add up to (nearly) its wall time
    assert sum(result.split_rounds[0].values()) == pytest.approx(result.round_s[0], rel=0.05)
    assert result.split_s["training"] > 0 and result.split_s["aggregation"] > 0
    assert result.gas_total["finalize"] > 260 * 20_000  # finalize plus its settle calls
    assert set(result.gas) == {"commit", "reveal", "post", "finalize", "claim"}
    assert result.update_bytes == (784 * 64 + 64 + 64 * 10 + 10) * 4
    json.dumps(result.as_json())


def test_simulate_refuses_an_unknown_engine_in_one_line() -> None:
    result = CliRunner().invoke(app, ["simulate", "--engine", "spark", "--trainers", "2"])
    assert result.exit_code == 1
    assert "unknown engine 'spark'; use local or ray" in result.output
    assert "Traceback" not in result.output
