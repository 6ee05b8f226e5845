"""End to end: the demo's JSON claims, through the real CLI."""

from __future__ import annotations

import itertools
import json

import pytest
from typer.testing import CliRunner

from backend.cli.main import app

runner = CliRunner()


def _run(*args: str) -> dict:
    result = runner.invoke(app, ["demo", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("attack", ["sign_flip", "noise"])
def test_demo_json_claims(attack: str) -> None:
    s = _run("--trainers", "5", "--attackers", "1", "--rounds", "3", "--attack", attack)
    assert set(s) >= {
        "job_id",
        "rounds",
        "accuracy",
        "escrow_wei",
        "refund_wei",
        "slashed_to_pool_wei",
        "trainers",
        "gas",
    }
    assert s["rounds"] == 3 and len(s["accuracy"]) == 3
    assert all(b > a for a, b in zip(s["accuracy"], s["accuracy"][1:], strict=False)), s["accuracy"]
    assert s["accuracy"][-1] > 0.6
    attackers = [t for t in s["trainers"] if t["attack"]]
    honest = [t for t in s["trainers"] if not t["attack"]]
    assert len(attackers) == 1 and attackers[0]["attack"] == attack
    bad = attackers[0]
    assert bad["flagged_rounds"] == 3 and bad["reward_wei"] == 0 and bad["slashed_wei"] > 0
    assert bad["score_total"] == 0 and bad["reliability"] == 0
    assert all(
        t["reward_wei"] > 0 and t["slashed_wei"] == 0 and t["flagged_rounds"] == 0 for t in honest
    )
    assert s["slashed_to_pool_wei"] == sum(t["slashed_wei"] for t in s["trainers"])
    assert (
        sum(t["reward_wei"] for t in s["trainers"]) + s["refund_wei"]
        == s["escrow_wei"] + s["slashed_to_pool_wei"]
    )
    assert set(s["gas"]) == {"deploy", "create_job", "submit", "post_round", "finalize"}
    assert all(isinstance(v, int) and v > 21_000 for v in s["gas"].values())


def test_demo_tables_and_store_option(tmp_path) -> None:
    result = runner.invoke(
        app, ["demo", "--trainers", "2", "--rounds", "1", "--store", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    assert "Payouts" in result.stdout and "rounds" in result.stdout
    assert any((tmp_path / "s" / "blobs").iterdir())


def test_demo_bad_arguments_fail_in_one_line() -> None:
    result = runner.invoke(app, ["demo", "--trainers", "2", "--attackers", "3"])
    assert result.exit_code == 1
    assert "cannot exceed" in result.output
    result = runner.invoke(app, ["demo", "--attack", "bogus"])
    assert result.exit_code == 1 and "unknown attack" in result.output


def test_demo_codecs_go_through_the_trainer_path() -> None:
    """--codec sends every update as the CLI's trainers do (from downloaded weights). int8
    loses at most a point at any round against fp32; top-k still learns round over round;
    the attacker is caught whatever the codec."""
    args = ("--trainers", "5", "--attackers", "1", "--rounds", "3")
    by_codec = {c: _run(*args, "--codec", c) for c in ("fp32", "int8", "topk")}
    fp32, int8, topk = (by_codec[c]["accuracy"] for c in ("fp32", "int8", "topk"))
    assert all(abs(a - b) <= 0.01 for a, b in zip(int8, fp32, strict=True)), (int8, fp32)
    assert all(b > a for a, b in itertools.pairwise(topk)), topk
    for codec, s in by_codec.items():
        assert s["codec"] == codec
        flagged = [t["flagged_rounds"] for t in s["trainers"]]
        assert flagged == [0, 0, 0, 0, 3], (codec, flagged)
    result = runner.invoke(app, ["demo", "--codec", "zip"])
    assert result.exit_code == 1 and "unknown codec" in result.output


# -- disputes (issue 13): a lying aggregator is overturned, a frivolous challenge is upheld ------
def test_demo_lying_aggregator_is_overturned() -> None:
    s = _run("--trainers", "4", "--rounds", "3", "--lying-aggregator")
    (dispute,) = s["disputes"]
    assert dispute["round"] == 2 and dispute["outcome"] == "overturned"
    # the whole bond (the reward, by default) went to the harmed trainer, challenger and voters
    assert dispute["aggregator_bond_slashed_wei"] == s["escrow_wei"]
    assert dispute["challenger"] not in {t["address"] for t in s["trainers"]}
    # the lie flagged the first trainer; the correction gave its stake back and paid its rounds
    assert all(t["slashed_wei"] == 0 and t["reward_wei"] > 0 for t in s["trainers"])
    assert all(t["flagged_rounds"] == 0 for t in s["trainers"])
    # a proven liar does not keep judging: the job ended after the corrected round, and the
    # owner got back the share of the round never played
    assert len(s["accuracy"]) == 2
    assert s["refund_wei"] >= s["escrow_wei"] // 3
    assert s["conservation"]["holds"], s["conservation"]


def test_demo_frivolous_challenge_is_upheld() -> None:
    s = _run("--trainers", "4", "--rounds", "3", "--frivolous-challenge")
    (dispute,) = s["disputes"]
    assert dispute["round"] == 2 and dispute["outcome"] == "upheld"
    assert dispute["aggregator_bond_slashed_wei"] == 0
    assert len(s["accuracy"]) == 3 and "finalize" in s["gas"]  # the job went on and settled
    assert all(t["slashed_wei"] == 0 and t["reward_wei"] > 0 for t in s["trainers"])
    assert s["conservation"]["holds"], s["conservation"]
