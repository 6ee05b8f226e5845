"""`fedmarket trainer run --flower-client MODULE:ATTR`: a Flower NumPyClient as a trainer.

One job on the persistent dev chain (module fixture): two trainers with data shards (the
library's `TrainerClient`) and, through the CLI, a real Flower client (flwr 1.x, written as
Flower's quickstart writes one: tests/trainer/flower_quickstart_client.py).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from backend.chain.market import ROLE_AGGREGATOR, JobParams, JobStatus, MarketClient
from backend.chain.persistent import PersistentEmbeddedChain
from backend.cli.main import app
from backend.core import codec
from backend.core.datasets import load_digits_dataset, shard, split_train_validation_test
from backend.core.jobspec import JobSpec, TrainingSpec
from backend.core.models import ModelSpec, build_model, get_weights, template_of
from backend.core.valpackage import ValidationPackage, build_package
from backend.storage import LocalStore, raw_cid, sha256_bytes
from trainer_client.client import TrainerClient

runner = CliRunner()
ETHER = 10**18
CLIENTS = "tests.trainer.flower_quickstart_client"
DUCKS = "tests.trainer.duck_clients"
FLOWER_DEV = 3  # the dev account the Flower trainer signs with
AGG_DEV = 4


@dataclass
class Market:
    home: Path
    market: MarketClient
    store: LocalStore
    job_id: int
    honest: list[TrainerClient]
    package: ValidationPackage


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    """A running one-round job (digits MLP 64-16-10, fp32) with three trainers joined."""
    home = tmp_path_factory.mktemp("flower") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDMARKET_HOME", str(home))
        for var in ("FEDMARKET_CONFIG", "FEDMARKET_RPC_URL", "FEDMARKET_MARKET_ADDRESS"):
            mp.delenv(var, raising=False)
        for var in ("FEDMARKET_IPFS_API", "FEDMARKET_ACCOUNT", "FEDMARKET_STORE_DIR"):
            mp.delenv(var, raising=False)
        cli("deploy", "--dev-account", "0")
        address = tomllib.loads((home / "config.toml").read_text())["market_address"]
        market = MarketClient.at(PersistentEmbeddedChain.open(home / "chain.jsonl"), address)
        store = LocalStore(home / "store")
        yield _create_job(home, market, store)


def _create_job(home: Path, market: MarketClient, store: LocalStore) -> Market:
    chain = market.chain
    train, val, _ = split_train_validation_test(load_digits_dataset(), seed=0)
    spec = JobSpec(model=ModelSpec(hidden=[16]), training=TrainingSpec(local_epochs=1, lr=0.1))
    spec_blob = spec.to_bytes()
    initial = codec.encode(get_weights(build_model(spec.model)))
    package = build_package(val, 1, raw_cid)
    agg = chain.dev_account(AGG_DEV)
    market.register_role(agg, ROLE_AGGREGATOR, 20 * ETHER)
    params = JobParams(
        aggregator=agg.address,
        stake_required=ETHER,
        rounds=1,
        min_trainers=3,
        max_trainers=3,
        spec_hash=sha256_bytes(spec_blob),
        spec_cid=store.put(spec_blob),
        initial_model_hash=sha256_bytes(initial),
        initial_model_cid=store.put(initial),
        validation_root=package.root,
        challenge_window=0,
    )
    job_id, _ = market.create_job(chain.dev_account(0), params, 10 * ETHER)
    honest = []
    for i, part in zip((1, 2, FLOWER_DEV), shard(train, 3, seed=0), strict=True):
        account = chain.dev_account(i)
        market.register(account, 2 * ETHER)
        market.join(account, job_id)
        if i != FLOWER_DEV:
            honest.append(TrainerClient(market, store, account, part, seed=i))
    assert market.job(job_id).status_enum == JobStatus.RUNNING
    return Market(home, market, store, job_id, honest, package)


def cli(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def fails(job: Market, *args: str, match: str) -> None:
    """`trainer run JOB ARGS...` exits 1 with one error line containing `match`, and nothing
    reaches the chain."""
    block = job.market.chain.w3.eth.block_number
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDMARKET_HOME", str(job.home))
        result = cli("trainer", "run", str(job.job_id), *args, "--step", ok=False)
    assert result.exit_code == 1, (args, result.output)
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert match in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert job.market.chain.w3.eth.block_number == block


def flower(job: Market, ref: str, *, ok: bool = True):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDMARKET_HOME", str(job.home))
        return cli(
            "trainer",
            "run",
            str(job.job_id),
            "--flower-client",
            ref,
            "--once",
            "--poll",
            "0.05",
            "--timeout",
            "30",
            "--dev-account",
            str(FLOWER_DEV),
            ok=ok,
        )


# -- bad MODULE:ATTR and options: one line, nothing on chain (no flwr needed) -----------------
@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("no_colon", "expected MODULE:ATTR"),
        ("no_such_module_xyz:client", "no module named 'no_such_module_xyz'"),
        (f"{DUCKS}:nope", "has no attribute 'nope'"),
        (f"{DUCKS}:needs_arguments", "needs arguments"),
        (f"{DUCKS}:not_a_client", "gives an object of type int, not a Flower NumPyClient"),
        (f"{DUCKS}:make_module", "gives an object of type Sequential, not a Flower"),
        (f"{DUCKS}:broken_factory", "calling it failed: RuntimeError: no GPU here"),
        ("tests.trainer.broken_client_module:client", "importing tests.trainer.broken_client"),
    ],
)
def test_a_bad_flower_client_reference_is_one_line(job: Market, ref: str, match: str) -> None:
    fails(job, "--flower-client", ref, "--dev-account", str(FLOWER_DEV), match=match)


def test_a_duck_typed_client_that_does_not_fit_is_one_line(job: Market) -> None:
    fails(
        job,
        "--flower-client",
        f"{DUCKS}:three_arrays",
        "--dev-account",
        str(FLOWER_DEV),
        match="get_parameters gave 3 arrays; the job's model has 4 tensors",
    )


def test_data_and_flower_client_are_exclusive_and_one_is_needed(job: Market, tmp_path) -> None:
    fails(
        job,
        "--data",
        str(tmp_path / "x.npz"),
        "--flower-client",
        f"{DUCKS}:client",
        match="--data or --flower-client, not both",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDMARKET_HOME", str(job.home))
        result = cli("trainer", "run", str(job.job_id), "--step", ok=False)
    assert result.exit_code == 2  # typer's usage error, as before --flower-client existed
    assert "Missing option '--data'" in result.output


# -- a real Flower client (flwr installed: the `flower` extra) --------------------------------
@pytest.mark.parametrize(
    ("attr", "match"),
    [
        (
            "wider",
            "array 0 ('0.weight') has shape (32, 64); the job's '0.weight' has shape (16, 64)",
        ),
        ("deeper", "get_parameters gave 6 arrays; the job's model has 4 tensors"),
        ("app", "is a ClientApp, which runs under Flower's own runtime"),
        ("context_client_fn", "needs arguments: point at a NumPyClient instance"),
        ("with_dropout", "array 2 ('3.weight') of shape (10, 16) is not a tensor of the job's"),
    ],
)
def test_a_flower_client_that_does_not_fit_is_one_line(job: Market, attr: str, match: str) -> None:
    pytest.importorskip("flwr", reason="the `flower` extra (flwr) is not installed")
    fails(job, "--flower-client", f"{CLIENTS}:{attr}", "--dev-account", "3", match=match)


def test_a_flower_client_trains_commits_reveals_and_is_paid_like_an_honest_trainer(
    job: Market,
) -> None:
    pytest.importorskip("flwr", reason="the `flower` extra (flwr) is not installed")
    from aggregator.round.driver import RoundDriver
    from tests.trainer import flower_quickstart_client as quickstart

    market, job_id = job.market, job.job_id
    template = template_of(ModelSpec(hidden=[16]))
    w_global = codec.decode(job.store.get(market.current_model(job_id)[1]), template)
    for client in job.honest:
        client.participate(job_id, 1)
    # the last commit closes the commit phase early: the Flower trainer commits and reveals
    out = flower(job, f"{CLIENTS}:client").output
    assert json.loads(out.strip().splitlines()[-1])["actions"] == [
        ["committed", 1],
        ["revealed", 1],
    ]
    for client in job.honest:
        client.reveal(job_id, 1)
    # what it committed is global − the weights its fit left in its own torch module, mapped
    # by position (fc1, fc2 are not the job's names "0.", "2.")
    local = [v.numpy() for v in quickstart.client.net.state_dict().values()]
    delta = [w_global[n] - w for n, w in zip(template.names, local, strict=True)]
    assert float(np.linalg.norm(np.concatenate([d.ravel() for d in delta]))) > 0

    driver = RoundDriver(market, job.store, market.chain.dev_account(AGG_DEV), job_id, job.package)
    report = driver.run_round()
    by_trainer = {o.trainer: o for o in report.outcome.outcomes}
    flower_address = market.chain.dev_account(FLOWER_DEV).address
    ours = by_trainer[flower_address]
    assert all(int(o.reason) == 0 for o in by_trainer.values()), report.outcome.outcomes
    expected_norm = float(np.sqrt(sum(float((d.astype(np.float64) ** 2).sum()) for d in delta)))
    assert ours.update_norm == pytest.approx(expected_norm, rel=1e-5)
    assert ours.score > 0

    assert driver.reveal_chunk() is not None  # the round is final: the job can be finalized
    market.finalize(market.chain.dev_account(0), job_id)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDMARKET_HOME", str(job.home))
        claimed = cli("trainer", "claim", str(job_id), "--dev-account", "3", "--json").output
    reward = json.loads(claimed.strip().splitlines()[-1])["reward_wei"]
    honest_rewards = []
    for client in job.honest:
        market.claim(client.account, job_id)
        honest_rewards.append(
            next(int(e["reward"]) for e in market.claims(job_id) if e["trainer"] == client.address)
        )
    assert reward > 0
    assert reward > min(honest_rewards) / 3, (reward, honest_rewards)
