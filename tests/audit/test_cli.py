"""`fedmarket audit ...` and `fedmarket demo --audit` through the real CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import backend.cli.audit as cli_audit
from backend.cli.main import app
from tests.audit.conftest import ROUNDS, TRAINERS, Indexed

runner = CliRunner()


def _json(args: list[str]) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_audit_jobs_job_trainer_print_what_the_api_serves(indexed, api_client) -> None:
    db = ["--db", indexed.db_url]
    jobs = _json(["audit", "jobs", *db])
    assert jobs == api_client.get("/jobs").json()["items"]
    rec = _json(["audit", "job", "1", *db])
    assert rec["job"] == api_client.get("/jobs/1").json()
    assert len(rec["rounds"]) == ROUNDS and len(rec["submissions"]) == ROUNDS * TRAINERS
    assert rec["payouts"] == api_client.get("/jobs/1/payouts").json()["items"]
    bad = indexed.attacker
    tr = _json(["audit", "trainer", bad, *db])
    assert tr["address"] == bad and len(tr["slashes"]) == ROUNDS

    table = runner.invoke(app, ["audit", "job", "1", *db])
    assert table.exit_code == 0, table.output
    assert (
        "outlier" in table.stdout and "Payouts" in table.stdout and "owner refund" in table.stdout
    )
    table = runner.invoke(app, ["audit", "jobs", *db])
    assert table.exit_code == 0 and "settled" in table.stdout and "3/3" in table.stdout
    table = runner.invoke(app, ["audit", "trainer", bad, *db])
    assert table.exit_code == 0 and "Slashes" in table.stdout


def test_audit_job_shows_corrections_and_disputes(indexed: Indexed) -> None:
    db = ["--db", indexed.db_url]
    job_id = str(indexed.disputed.job.job_id)
    rec = _json(["audit", "job", job_id, *db])
    assert [d["outcome"] for d in rec["disputes"]] == ["upheld", "overturned"]
    table = runner.invoke(app, ["audit", "job", job_id, *db], terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "2 (corrected)" in table.stdout and "Disputes" in table.stdout
    assert "overturned · corrected" in table.stdout and "2 dispute(s)" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "job", "999"], "job 999 is not in the index"),
        (["audit", "trainer", "0x0000000000000000000000000000000000000001"], "not in the index"),
        (["audit", "trainer", "nope"], "address"),
    ],
)
def test_audit_errors_are_one_line(indexed, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "--db", indexed.db_url])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error:") and message in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_database_url_is_a_one_line_error() -> None:
    result = runner.invoke(app, ["audit", "jobs", "--db", "nosuchdialect://x"])
    assert result.exit_code == 1 and result.stderr.startswith("error:")
    assert "cannot open the indexer database" in result.stderr


def test_audit_index_and_verify_need_a_market_address(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("FEDMARKET_MARKET_ADDRESS", raising=False)
    monkeypatch.setenv("FEDMARKET_HOME", str(tmp_path))
    monkeypatch.setenv("FEDMARKET_CONFIG", str(tmp_path / "none.toml"))
    for args in (
        ["audit", "index", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        ["audit", "verify", "1"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "FEDMARKET_MARKET_ADDRESS" in result.stderr


def test_audit_index_resumes(indexed, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(cli_audit, "_market", lambda settings: indexed.m.market)
    db = ["--db", f"sqlite:///{tmp_path / 'cli.db'}"]
    first = runner.invoke(app, ["audit", "index", *db, "--batch", "8"])
    assert first.exit_code == 0, first.output
    assert f"{indexed.stats.inserted} new" in first.stdout
    second = runner.invoke(app, ["audit", "index", *db])
    assert second.exit_code == 0 and " 0 new" in second.stdout
    assert [j["job_id"] for j in _json(["audit", "jobs", *db])] == [3, 2, 1]


def test_audit_verify_ok(indexed, monkeypatch) -> None:
    monkeypatch.setattr(cli_audit, "_market", lambda settings: indexed.m.market)
    store = str(indexed.m.store.root)
    report = _json(["audit", "verify", "1", "--store-dir", store])
    assert report["ok"] is True and report["rounds_verified"] == ROUNDS
    assert report["unverified"] == [] and report["chunks_revealed"] == [1, 2, 3]
    corrected = _json(["audit", "verify", "2", "--store-dir", store])
    assert corrected["ok"] is True
    assert [r["corrected"] for r in corrected["rounds"]] == [False, True]
    assert "recomputed" not in corrected["rounds"][0]  # the model blob stays out of the JSON


def test_demo_audit_flag_adds_the_audit_to_the_json() -> None:
    result = runner.invoke(app, ["demo", "--trainers", "2", "--rounds", "1", "--audit", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["audit"] == {"rounds_verified": 1, "mismatches": 0}
    assert "audit: 1 round(s) re-verified, 0 mismatch(es)" in result.stdout
