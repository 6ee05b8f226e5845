"""The owner's and trainers' commands as separate invocations on a persistent embedded chain."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from backend.chain.accounts import Keystore
from backend.chain.market import JobStatus, MarketClient
from backend.chain.persistent import PersistentEmbeddedChain
from backend.cli.main import app
from backend.core.datasets import load_dataset, shard, split_train_validation_test, to_npz_bytes

runner = CliRunner()
PW = "correct horse"


def cli(*args: str, ok: bool = True, env: dict | None = None):
    result = runner.invoke(app, list(args), env=env)
    if ok:
        assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def fails(*args: str, match: str, env: dict | None = None) -> None:
    result = cli(*args, ok=False, env=env)
    assert result.exit_code == 1, (args, result.output)
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert match in lines[0], lines[0]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FEDMARKET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FEDMARKET_PASSWORD", PW)
    for var in (
        "FEDMARKET_CONFIG",
        "FEDMARKET_RPC_URL",
        "FEDMARKET_MARKET_ADDRESS",
        "FEDMARKET_IPFS_API",
        "FEDMARKET_ACCOUNT",
        "FEDMARKET_STORE_DIR",
    ):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def _market(home: Path) -> MarketClient:
    address = tomllib.loads((home / "config.toml").read_text())["market_address"]
    return MarketClient.at(PersistentEmbeddedChain.open(home / "chain.jsonl"), address)


def _snapshot(market: MarketClient, job_id: int, who: list[str]) -> tuple:
    job = market.job(job_id)
    return (
        dict(job.fields),
        [market.account_of(a) for a in who],
        [market.participant(job_id, a) for a in who],
        market.chain.w3.eth.block_number,
    )


def test_accounts_keystore(home: Path) -> None:
    out = cli("account", "new", "alice").output
    address = out.split()[1]
    assert (home / "keystore" / "alice.json").exists()
    key_json = (home / "keystore" / "alice.json").read_text()
    assert "ciphertext" in key_json
    listed = json.loads(cli("account", "list", "--json").output)
    assert listed == [{"name": "alice", "address": address}]
    fails("account", "new", "alice", match="already exists")
    key = "0x" + "11" * 32
    result = cli("account", "import", "bob", env={"FEDMARKET_PRIVATE_KEY": key})
    assert key[2:] not in result.output
    assert Keystore(home / "keystore").unlock("bob", PW).key.hex().endswith("11" * 32)
    fails(
        "account",
        "import",
        "carol",
        env={"FEDMARKET_PRIVATE_KEY": "0x12"},
        match="not a private key",
    )


def test_owner_trainers_aggregator_full_path(home: Path, tmp_path: Path) -> None:
    from aggregator.round.driver import RoundDriver

    cli("deploy", "--dev-account", "0")
    for name in ("owner", "agg"):
        cli("account", "new", name)
        cli("account", "fund", name, "--eth", "50")
    ks = Keystore(home / "keystore")
    agg_addr = ks.find("agg").address
    cli("aggregator", "register", "--bond", "5", "--account", "agg")

    data = load_dataset("digits")
    train, validation, _ = split_train_validation_test(data, seed=0)
    shards = shard(train, 3, seed=0)
    files = []
    for i, s in enumerate(shards):
        p = tmp_path / f"shard{i}.npz"
        p.write_bytes(to_npz_bytes(s))
        files.append(p)
    csv = tmp_path / "shard2.csv"  # the third trainer uses a CSV (last column: label)
    np.savetxt(csv, np.column_stack([shards[2].x, shards[2].y]), delimiter=",", fmt="%.6g")
    files[2] = csv
    bad = tmp_path / "bad.csv"
    np.savetxt(bad, np.column_stack([shards[0].x[:, :10], shards[0].y]), delimiter=",")
    (tmp_path / "val.npz").write_bytes(to_npz_bytes(validation))
    spec = tmp_path / "job.toml"
    spec.write_text(
        f"""
name = "digits test"
dataset = "digits"
rounds = 2
reward_eth = "3"
stake_eth = "1"
min_trainers = 3
max_trainers = 4
aggregator = "{agg_addr}"
validation_file = "val.npz"
codec = "int8"
outlier_rule = "median"
[model]
family = "mlp"
input_dim = 64
num_classes = 10
hidden = [16]
[training]
local_epochs = 1
"""
    )
    # wrong password: one line, exit 1, nothing on chain
    market = _market(home)
    block = market.chain.w3.eth.block_number
    fails(
        "owner",
        "create-job",
        "--spec",
        str(spec),
        "--account",
        "owner",
        env={"FEDMARKET_PASSWORD": "wrong"},
        match="wrong password",
    )
    assert market.chain.w3.eth.block_number == block and market.next_job_id() == 1

    created = json.loads(
        cli("owner", "create-job", "--spec", str(spec), "--account", "owner", "--json").output
    )
    job_id = created["job_id"]
    assert Path(created["validation"]).exists()
    fails("owner", "status", "99", match="no job 99")

    trainers = [market.chain.dev_account(i).address for i in (1, 2, 3, 4)]
    for i in (1, 2, 3):
        cli("trainer", "register", "--stake", "2", "--dev-account", str(i))
    cli("trainer", "join", str(job_id), "--dev-account", "1", "--data", str(files[0]))
    before = _snapshot(market, job_id, trainers)
    fails("trainer", "join", str(job_id), "--dev-account", "1", match="AlreadyJoined")
    fails(
        "trainer",
        "join",
        str(job_id),
        "--dev-account",
        "2",
        "--data",
        str(bad),
        match="takes 64 features",
    )
    cli("trainer", "register", "--stake", "0.1", "--dev-account", "4")
    mid = _snapshot(market, job_id, trainers)
    fails("trainer", "join", str(job_id), "--dev-account", "4", match="InsufficientFreeStake")
    assert _snapshot(market, job_id, trainers) == mid
    assert before[0] == mid[0] and before[2] == mid[2]
    cli("trainer", "join", str(job_id), "--dev-account", "2")
    cli("trainer", "join", str(job_id), "--dev-account", "3")
    cli("owner", "start", str(job_id), "--account", "owner")
    assert market.job(job_id).status_enum == JobStatus.RUNNING
    out = cli("owner", "reveal-validation", str(job_id), "--account", "owner").output
    assert "no validation chunk is due (no round has been posted yet)" in out

    driver = RoundDriver(market, market_store(home), ks.unlock("agg", PW), job_id, validation)
    for r in (1, 2):
        fails(
            "trainer",
            "run",
            str(job_id),
            "--data",
            str(bad),
            "--dev-account",
            "1",
            match="does not fit",
        )
        assert int(market.participant(job_id, trainers[0])["lastCommitRound"]) == r - 1
        for i in (1, 2):  # commit only
            out = cli(
                "trainer",
                "run",
                str(job_id),
                "--data",
                str(files[i - 1]),
                "--step",
                "--dev-account",
                str(i),
            ).output
            assert json.loads(out.strip().splitlines()[-1])["action"] == "committed"
        # the last commit closes the commit phase early: commit and reveal in one go
        out = cli(
            "trainer",
            "run",
            str(job_id),
            "--data",
            str(files[2]),
            "--once",
            "--poll",
            "0.05",
            "--timeout",
            "30",
            "--dev-account",
            "3",
        ).output
        assert json.loads(out.strip().splitlines()[-1])["actions"] == [
            ["committed", r],
            ["revealed", r],
        ]
        for i in (1, 2):  # a restart reveals the pending commitment, never commits again
            out = cli(
                "trainer",
                "run",
                str(job_id),
                "--data",
                str(files[i - 1]),
                "--once",
                "--poll",
                "0.05",
                "--timeout",
                "30",
                "--dev-account",
                str(i),
            ).output
            assert json.loads(out.strip().splitlines()[-1])["actions"] == [["revealed", r]]
        if r == 1:
            snap = _snapshot(market, job_id, trainers)
            fails("trainer", "claim", str(job_id), "--dev-account", "1", match="WrongStatus")
            assert _snapshot(market, job_id, trainers) == snap
        report = driver.run_round()
        assert report.round == r
        assert all(int(o.reason) == 0 for o in report.outcome.outcomes), report.outcome.outcomes
        # this aggregator was given the plain split (no salts): the owner reveals the chunk
        assert driver.reveal_chunk() is None
        out = cli("owner", "reveal-validation", str(job_id), "--account", "owner").output
        assert f"round {r}'s validation chunk published as" in out, out
        out = cli("owner", "reveal-validation", str(job_id), "--account", "owner").output
        assert f"round {r}'s chunk is already revealed" in out, out

    residuals = list((home / "trainer").rglob("*-residual.safetensors"))
    assert len(residuals) == 3  # int8 error feedback persisted per trainer
    status = json.loads(cli("owner", "status", str(job_id), "--json").output)
    assert status["rounds_posted"] == 2
    cli("owner", "finalize", str(job_id), "--account", "owner")
    for i in (1, 2, 3):
        cli("trainer", "claim", str(job_id), "--dev-account", str(i))
    fails("trainer", "claim", str(job_id), "--dev-account", "1", match="AlreadyClaimed")
    assert len(market.claims(job_id)) == 3
    cli("owner", "refund", str(job_id), "--account", "owner")
    assert sorted(market.validation_chunks(job_id)) == [1, 2]
    model = tmp_path / "model.safetensors"
    cli("owner", "download", str(job_id), "--out", str(model))
    assert model.stat().st_size > 0
    st = json.loads(cli("trainer", "status", "--dev-account", "1", "--json").output)
    assert st["jobs"][0]["claimed"] is True and st["locked_wei"] == 0
    cli("trainer", "withdraw", "--dev-account", "1")
    assert market.account_of(trainers[0])["balance"] == 0


def market_store(home: Path):
    from backend.storage import LocalStore

    return LocalStore(home / "store")
