"""Issue 13's story as separate processes on a real node (anvil) and a real IPFS daemon: a lying
aggregator flags an honest trainer in round 2; four `fedmarket verifier serve` processes check
every round as soon as its chunk is public, one challenges, the other three form the committee,
vote by commit–reveal and post the correct result; the trainers are paid as the honest result
says, the liar's bond pays for it, and ETH is conserved to the wei."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.chain.market import JobStatus, MarketClient
from backend.chain.rpc import rpc_chain
from backend.core.datasets import (
    load_digits_dataset,
    shard,
    split_train_validation_test,
    to_npz_bytes,
)
from backend.devtools.devnet import find_ipfs
from backend.devtools.devnode import find_anvil
from backend.protocol.settings import load_settings
from backend.simulation.disputes import conservation
from tests.integration.processes import cli, devnet_at, run_cli, wait_for
from verifier.disputes import dispute_rows

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_anvil() is None or find_ipfs() is None,
        reason="needs anvil and the IPFS daemon (scripts/install_devnet.sh)",
    ),
]
ROOT = Path(__file__).resolve().parents[2]
OWNER, AGGREGATOR, TRAINERS, VERIFIERS = 1, 2, (3, 4, 5), (6, 7, 8, 9)


@pytest.fixture()
def devnet(tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir()
    with devnet_at(home) as net:
        yield net


def _job_toml(home: Path, aggregator: str) -> Path:
    data = load_digits_dataset()
    train, validation, _ = split_train_validation_test(data)
    for i, part in enumerate(shard(train, len(TRAINERS))):
        (home / f"shard{i}.npz").write_bytes(to_npz_bytes(part))
    (home / "val.npz").write_bytes(to_npz_bytes(validation))
    path = home / "job.toml"
    path.write_text(f"""
name = "disputes"
dataset = "digits"
rounds = 2
reward_eth = "3"
stake_eth = "1"
min_trainers = 3
max_trainers = 3
aggregator = "{aggregator}"
validation_file = "{home / "val.npz"}"
commit_duration = 60
reveal_duration = 60
post_duration = 40
challenge_window = 20
[model]
family = "mlp"
input_dim = 64
num_classes = 10
hidden = [32]
""")
    return path


def test_a_lying_aggregator_is_overturned_by_verifier_processes(devnet) -> None:  # type: ignore[no-untyped-def]
    home, node, env = devnet
    chain = rpc_chain(node.url, dev_accounts=True)
    job_toml = _job_toml(home, chain.dev_account(AGGREGATOR).address)
    run_cli(env, "deploy", "--dev-account", "0")
    run_cli(env, "aggregator", "register", "--bond", "5", "--dev-account", str(AGGREGATOR))
    for v in VERIFIERS:
        run_cli(env, "verifier", "register", "--bond", "1", "--dev-account", str(v))
    created = run_cli(
        env, "owner", "create-job", "--spec", str(job_toml), "--dev-account", "1", "--json"
    )
    package = json.loads(created.strip().splitlines()[-1])["validation"]
    market = MarketClient.at(chain, str(load_settings(home / "config.toml").market_address))
    for k, t in enumerate(TRAINERS):
        run_cli(env, "trainer", "register", "--stake", "1", "--dev-account", str(t))
        run_cli(
            env,
            "trainer",
            "join",
            "1",
            "--data",
            str(home / f"shard{k}.npz"),
            "--dev-account",
            str(t),
        )
    victim = chain.dev_account(TRAINERS[0]).address
    procs = [
        subprocess.Popen(
            cli("verifier", "serve", "--dev-account", str(v), "--poll-interval", "0.5"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for v in VERIFIERS
    ]
    liar = [sys.executable, str(ROOT / "tests/integration/lying_aggregator.py"), package, victim]
    procs.append(subprocess.Popen(liar, env={**env, "PYTHONPATH": str(ROOT)}))
    for k, t in enumerate(TRAINERS):
        run = cli(
            "trainer",
            "run",
            "1",
            "--data",
            str(home / f"shard{k}.npz"),
            "--dev-account",
            str(t),
            "--poll",
            "0.5",
            "--timeout",
            "600",
        )
        procs.append(
            subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    try:
        wait_for(lambda: dispute_rows(market, 1) != [], 300, "a challenge of round 2")
        wait_for(
            lambda: dispute_rows(market, 1)[0]["outcome"] == "overturned", 400, "the correction"
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    (row,) = dispute_rows(market, 1)
    assert row["round"] == 2 and row["challenger"] in {
        chain.dev_account(v).address for v in VERIFIERS
    }
    assert row["aggregator_bond_slashed_wei"] == 3 * 10**18  # the default bond: the reward
    assert market.job(1).status_enum == JobStatus.SETTLED  # the last round: settled as corrected
    for t in TRAINERS:
        run_cli(env, "trainer", "claim", "1", "--dev-account", str(t))
    run_cli(env, "owner", "refund", "1", "--dev-account", "1")
    paid = {str(c["trainer"]): int(c["reward"]) for c in market.claims(1)}
    assert all(paid[chain.dev_account(t).address] > 0 for t in TRAINERS)
    reversed_ = {str(e["trainer"]) for e in market.job_events(1, "SlashReversed")}
    assert reversed_ == {victim}
    accounts = [chain.dev_account(i).address for i in range(10)]
    held = conservation(market, 1, accounts)
    assert held.holds, held
    out = run_cli(env, "audit", "verify", "1")
    assert "no mismatch" in out
