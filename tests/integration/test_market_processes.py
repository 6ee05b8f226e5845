"""The whole market as separate processes against a real node (anvil) and a real IPFS daemon.

Owner, three trainers, the aggregator service and the API each run as their own `fedmarket`
invocation. The aggregator service (given the owner's validation package: it reveals each
round's validation chunk after posting the round) is killed (SIGKILL) as soon as round 1 is
posted — possibly before its chunk is revealed — and restarted in the middle of round 2: round
1's chunk must still be revealed, round 2 posted exactly once, and the job must finish, settle
and re-verify.
"""

from __future__ import annotations

import json
import signal
import subprocess

import httpx
import numpy as np
import pytest

from aggregator.round.driver import next_block_time, not_final_reason
from backend.chain.market import JobStatus, MarketClient, Phase
from backend.chain.rpc import rpc_chain
from backend.core.datasets import (
    load_digits_dataset,
    shard,
    split_train_validation_test,
    to_npz_bytes,
)
from backend.devtools.devnet import find_ipfs
from backend.devtools.devnode import find_anvil, free_port
from tests.integration.processes import cli, devnet_at, run_cli, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_anvil() is None or find_ipfs() is None,
        reason="needs anvil and the IPFS daemon (scripts/install_devnet.sh)",
    ),
]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):  # type: ignore[no-untyped-def]
    with devnet_at(tmp_path_factory.mktemp("home")) as net:
        yield net


def test_market_as_separate_processes_survives_an_aggregator_kill(devnet) -> None:
    home, node, env = devnet
    data = load_digits_dataset()
    train, validation, _ = split_train_validation_test(data)
    shards = shard(train, 3)
    files = []
    for i, part in enumerate(shards):
        f = home / f"shard{i}.npz"
        f.write_bytes(to_npz_bytes(part))
        files.append(f)
    (home / "val.npz").write_bytes(to_npz_bytes(validation))
    chain = rpc_chain(node.url, dev_accounts=True)
    aggregator = chain.dev_account(2).address
    (home / "job.toml").write_text(f"""
name = "integration"
dataset = "digits"
rounds = 2
reward_eth = "3"
stake_eth = "1"
min_trainers = 3
max_trainers = 3
aggregator = "{aggregator}"
validation_file = "{home / "val.npz"}"
[model]
family = "mlp"
input_dim = 64
num_classes = 10
hidden = [32]
""")
    run_cli(env, "deploy", "--dev-account", "0")
    run_cli(env, "aggregator", "register", "--bond", "5", "--dev-account", "2")
    created = run_cli(
        env, "owner", "create-job", "--spec", str(home / "job.toml"), "--dev-account", "1", "--json"
    )
    package = json.loads(created.strip().splitlines()[-1])["validation"]
    from backend.protocol.settings import load_settings

    settings = load_settings(home / "config.toml")
    market = MarketClient.at(chain, str(settings.market_address))
    assert market.job(1).status_enum == JobStatus.CREATED

    agg_port = free_port()
    serve = cli(
        "aggregator",
        "serve",
        "--dev-account",
        "2",
        "--validation",
        f"1={package}",
        "--port",
        str(agg_port),
        "--poll-interval",
        "0.5",
    )
    agg = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trainers: list[subprocess.Popen[bytes]] = []
    try:
        for k, f in enumerate(files):
            acct = str(3 + k)
            run_cli(env, "trainer", "register", "--stake", "1", "--dev-account", acct)
            run_cli(env, "trainer", "join", "1", "--data", str(f), "--dev-account", acct)
        assert market.job(1).status_enum == JobStatus.RUNNING  # the third join started it
        wait_for(
            lambda: (
                httpx.get(f"http://127.0.0.1:{agg_port}/health", timeout=1).status_code == 200
                if _up(agg_port)
                else False
            ),
            60,
            "the aggregator service",
        )
        for k, f in enumerate(files):
            trainers.append(
                subprocess.Popen(
                    cli(
                        "trainer",
                        "run",
                        "1",
                        "--data",
                        str(f),
                        "--dev-account",
                        str(3 + k),
                        "--poll",
                        "0.5",
                        "--timeout",
                        "300",
                    ),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        # Round 1 is posted by the service; kill it as soon as round 2 opens (mid-round).
        wait_for(lambda: int(market.job(1).currentRound) >= 2, 180, "round 1 to be posted")
        agg.send_signal(signal.SIGKILL)
        agg.wait(timeout=10)
        wait_for(lambda: market.phase_of(1) == Phase.AWAITING_POST, 180, "round 2's reveals")
        assert int(market.job(1).currentRound) == 2  # nobody posted round 2 while it was down
        agg = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: market.job(1).status_enum == JobStatus.FINISHED, 180, "round 2 post")
        wait_for(lambda: sorted(market.validation_chunks(1)) == [1, 2], 60, "round 2's chunk")
        wait_for(
            lambda: not_final_reason(market.job(1), next_block_time(chain)) is None,
            60,
            "round 2 to be final",
        )
        for t in trainers:
            assert t.wait(timeout=120) == 0
        assert [p.round for p in market.round_posts(1)] == [1, 2]  # each round exactly once
        rounds = httpx.get(f"http://127.0.0.1:{agg_port}/jobs/1/rounds", timeout=5).json()
        assert len(rounds) == 2 or len(rounds.get("rounds", [])) == 2
    finally:
        for p in [agg, *trainers]:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)

    run_cli(env, "owner", "finalize", "1", "--dev-account", "1")
    for k in range(3):
        run_cli(env, "trainer", "claim", "1", "--dev-account", str(3 + k))
    run_cli(env, "owner", "refund", "1", "--dev-account", "1")
    revealed = run_cli(env, "owner", "reveal-validation", "1", "--dev-account", "1")
    assert "no validation chunk is due" in revealed  # the aggregator revealed both
    paid = sum(int(c["reward"]) for c in market.claims(1))
    job = market.job(1)
    assert paid + int(job.ownerRefund) == int(job.reward) + int(job.slashedPool)
    out = run_cli(env, "audit", "verify", "1")
    assert "2 round(s) and the settlement re-verified, no mismatch" in out

    api_port = free_port()
    api = subprocess.Popen(
        cli("api", "serve", "--index", "--port", str(api_port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _up(api_port), 60, "the API")
        body = httpx.get(f"http://127.0.0.1:{api_port}/jobs/1/rounds", timeout=5).json()
        items = body["items"] if isinstance(body, dict) and "items" in body else body
        assert len(items) == 2
    finally:
        api.kill()
        api.wait(timeout=10)
    assert np.isfinite(float(market.reliability_of(chain.dev_account(3).address)[0]))

    # The final model downloads and checks against the chain; with the IPFS daemon gone, the
    # same command retries with backoff and then says so in one line.
    run_cli(env, "owner", "download", "1", "--out", str(home / "final.safetensors"))
    assert (home / "final.safetensors").stat().st_size > 0
    dead = {
        **env,
        "FEDMARKET_IPFS_API": f"/ip4/127.0.0.1/tcp/{free_port()}",
        "FEDMARKET_STORAGE_RETRIES": "1",
    }
    proc = subprocess.run(
        cli("owner", "download", "1", "--out", str(home / "x.safetensors")),
        env=dead,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "unreachable" in proc.stderr and proc.stderr.strip().count("\n") == 0


def _up(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
