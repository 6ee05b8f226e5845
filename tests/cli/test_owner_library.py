"""The owner's role as a library (`backend.owner`): job file, publish, create, keep and check
the validation package, reveal the pending round's chunk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.chain.embedded import embedded_chain
from backend.chain.market import ROLE_AGGREGATOR, MarketClient
from backend.core.datasets import (
    Dataset,
    from_npz_bytes,
    load_dataset,
    split_train_validation_test,
    to_npz_bytes,
)
from backend.core.errors import ConfigError, ContractRevert
from backend.core.valchunks import split_chunks, verify
from backend.owner.jobfile import JobFile, eth_to_wei, load_job_file, write_job_file
from backend.owner.lifecycle import (
    create_job,
    existing_job,
    job_status,
    keep_validation,
    kept_validation,
    load_package,
    preflight_job,
    reveal_chunk,
)
from backend.owner.publish import prepare_job
from backend.storage import LocalStore, raw_cid, sha256_bytes

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


def test_job_file_terms_challenge_window_and_bond(tmp_path: Path) -> None:
    base = _job_file("0x" + "ab" * 20).model_dump(exclude_none=True)
    assert JobFile.model_validate(base).challenge_window is None  # the market's minimum
    path = write_job_file(
        tmp_path / "job.toml",
        JobFile.model_validate(base | {"challenge_window": 30, "aggregator_bond_eth": "1.5"}),
    )
    read, _ = load_job_file(path)
    assert read.challenge_window == 30 and read.aggregator_bond_wei() == 3 * ETHER // 2
    for key, value, message in [
        ("challenge_window", -1, "challenge_window: Input should be greater than or equal to 0"),
        ("aggregator_bond_eth", "0", "aggregator_bond_eth: Value error, must be above 0 ETH"),
        ("aggregator_bond_eth", "x", "aggregator_bond_eth: Value error, 'x' is not a number"),
        ("challenge_window", 10**8, "the job could run"),
    ]:
        bad = tmp_path / f"{key}.toml"
        text = path.read_text().replace("challenge_window = 30\n", "")
        text = text.replace('aggregator_bond_eth = "1.5"\n', "")
        bad.write_text(f"{key} = {value!r}\n".replace("'", '"') + text)
        with pytest.raises(ConfigError, match=message) as err:
            load_job_file(bad)
        assert "\n" not in str(err.value)


def test_publish_create_keep_and_reveal_chunks(tmp_path: Path) -> None:
    chain = embedded_chain()
    market, _ = MarketClient.deploy(chain, chain.dev_account(0))
    owner = chain.new_funded_account(10 * ETHER)
    aggregator = chain.dev_account(1)
    store = LocalStore(tmp_path / "store")
    job_file = _job_file(aggregator.address)
    spec = job_file.job_spec()
    _, validation, _ = split_train_validation_test(load_dataset("digits"), seed=0)
    artifacts = prepare_job(spec, validation, store, rounds=2)
    params = job_file.job_params(artifacts, aggregator.address)
    assert params.stake_required == ETHER // 2 and params.max_trainers == 2
    assert params.validation_root == artifacts.validation.root and params.challenge_window == 0
    assert params.aggregator_bond == 0  # the default: the reward

    # a job names only a registered aggregator whose free bond covers the reward
    with pytest.raises(ContractRevert, match="has not registered as an aggregator"):
        preflight_job(market, owner, params, job_file.reward_wei())
    market.register_role(aggregator, ROLE_AGGREGATOR, 2 * ETHER)
    with pytest.raises(ContractRevert, match="free bond"):
        preflight_job(market, owner, params, job_file.reward_wei())
    market.register_role(aggregator, ROLE_AGGREGATOR, ETHER)
    preflight_job(market, owner, params, job_file.reward_wei())
    job_id, _ = create_job(market, store, owner, artifacts, params, job_file.reward_wei())
    job = existing_job(market, job_id)
    assert store.has(artifacts.spec_cid) and store.has(artifacts.initial_model_cid)
    package = artifacts.validation
    for r in (1, 2):  # one chunk per round, each private until its reveal, CIDs predicted
        chunk = package.reveal(r)
        assert chunk.cid == raw_cid(chunk.blob) and not store.has(chunk.cid)
        assert verify(chunk.proof, bytes(job.validationRoot), package.tree.layers[0][r - 1])
    assert [len(c) for c in package.chunks] == [len(c) for c in split_chunks(validation, 2)]
    status = job_status(market, job)
    assert status["status"] == "created" and status["validation_chunks_revealed"] == []

    kept = keep_validation(tmp_path / "job-1", artifacts)
    summary = json.loads(kept.with_suffix(".json").read_text())
    assert summary["root"] == package.root.hex() and len(summary["chunks"]) == 2
    assert "salt" not in kept.with_suffix(".json").read_text()  # the salts stay in the package
    assert kept == kept_validation(tmp_path / "job-1", job_id)
    assert len(from_npz_bytes(kept.read_bytes())) == len(validation)  # a plain data file too
    loaded = load_package(job, kept.read_bytes(), "kept")
    assert loaded.root == package.root and loaded.cids == package.cids
    other = prepare_job(spec, Dataset(validation.x[:-1], validation.y[:-1]), store, rounds=2)
    with pytest.raises(ConfigError, match="does not match job 1's validation root"):
        load_package(job, other.validation.to_bytes(), "other")
    with pytest.raises(ConfigError, match="without the chunks' salts"):
        load_package(job, to_npz_bytes(validation), "x")
    with pytest.raises(ConfigError, match="too few for 2000 rounds"):
        prepare_job(spec, validation, store, rounds=2000)
    # nothing posted yet: no chunk is due
    assert reveal_chunk(market, store, owner, job, package) is None
    with pytest.raises(ConfigError, match="there is no job 9"):
        existing_job(market, 9)
    assert sha256_bytes(package.reveal(1).blob) == package.reveal(1).content_hash
