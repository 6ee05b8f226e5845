"""The owner's role as a library (`backend.owner`): job file, publish, create, check the reveal."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.chain.embedded import embedded_chain
from backend.chain.market import MarketClient
from backend.core.datasets import Dataset, load_dataset, split_train_validation_test
from backend.core.errors import ConfigError
from backend.owner.jobfile import JobFile, eth_to_wei, load_job_file, write_job_file
from backend.owner.lifecycle import (
    check_validation,
    create_job,
    existing_job,
    job_status,
    preflight_job,
)
from backend.owner.publish import prepare_job
from backend.storage import LocalStore, raw_cid

ETHER = 10**18


def _job_file(aggregator: str) -> JobFile:
    return JobFile.model_validate(
        {
            "name": "library test",
            "dataset": "digits",
            "rounds": 2,
            "reward_eth": "3",
            "stake_eth": "0.5",
            "min_trainers": 2,
            "aggregator": aggregator,
            "validation_file": "val.npz",
            "outlier_rule": "median",
            "model": {"family": "mlp", "input_dim": 64, "num_classes": 10, "hidden": [8]},
            "training": {"local_epochs": 1, "lr": 0.05},
            "aggregation": {"rule": {"name": "consensus"}},
        }
    )


def test_a_written_job_file_reads_back(tmp_path: Path) -> None:
    written = _job_file("0x" + "ab" * 20)
    path = write_job_file(tmp_path / "job.toml", written)
    read, spec = load_job_file(path)
    assert read == written
    assert spec.aggregation.rule.name == "median"  # outlier_rule wins over the table
    assert read.validation_path(path) == (tmp_path / "val.npz").resolve()
    assert read.validation_path(path, tmp_path / "other.npz") == tmp_path / "other.npz"


def test_eth_amounts_name_the_setting() -> None:
    assert eth_to_wei("1.5", "stake_eth") == 3 * ETHER // 2
    with pytest.raises(ValueError, match="reward_eth: 'x' is not a number"):
        eth_to_wei("x", "reward_eth")
    with pytest.raises(ValueError, match="above the most the contract holds"):
        eth_to_wei("1e30", "stake_eth", max_wei=2**96 - 1)


def test_publish_create_and_reveal(tmp_path: Path) -> None:
    chain = embedded_chain()
    market, _ = MarketClient.deploy(chain, chain.dev_account(0))
    owner = chain.new_funded_account(10 * ETHER)
    store = LocalStore(tmp_path / "store")
    job_file = _job_file(chain.dev_account(1).address)
    spec = job_file.job_spec()
    _, validation, _ = split_train_validation_test(load_dataset("digits"), seed=0)
    artifacts = prepare_job(spec, validation, store)
    params = job_file.job_params(artifacts, chain.dev_account(1).address)
    assert params.stake_required == ETHER // 2 and params.max_trainers == 2

    preflight_job(market, owner, params, job_file.reward_wei())
    job_id, _ = create_job(market, store, owner, artifacts, params, job_file.reward_wei())
    job = existing_job(market, job_id)
    assert store.has(artifacts.spec_cid) and store.has(artifacts.initial_model_cid)
    assert not store.has(artifacts.validation_cid)  # private until the reveal
    assert artifacts.validation_cid == raw_cid(artifacts.validation_blob)
    assert job_status(market, job)["status"] == "created"

    other = Dataset(validation.x[:-1], validation.y[:-1])
    with pytest.raises(ConfigError, match="does not match job 1's validation commitment"):
        check_validation(job, store, prepare_job(spec, other, store).validation_blob, "other")
    # The reveal itself waits for finalization (the demo goes that far).
    checked = check_validation(job, store, artifacts.validation_blob, "val.npz")
    assert checked.cid == artifacts.validation_cid
    with pytest.raises(ConfigError, match="there is no job 9"):
        existing_job(market, 9)
