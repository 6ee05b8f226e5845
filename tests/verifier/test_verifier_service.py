"""The verifier service: it challenges only what does not reproduce, votes by commit–reveal with
a salt it saves first, and picks up where it left off after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.chain.market import MarketClient
from backend.cli.main import app
from backend.simulation.demo import DemoConfig, run_demo
from backend.simulation.disputes import settle_disputes
from verifier import VerifierJournal, VerifierService

runner = CliRunner()


def _dispute_ids(market: MarketClient) -> list[int]:
    return [int(e["args"]["disputeId"]) for e in market.court_logs("DisputeOpened")]


@pytest.fixture(scope="module")
def lying_demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    store = tmp_path_factory.mktemp("store")
    cfg = DemoConfig(trainers=3, rounds=3, lying_aggregator=True, store_dir=store)
    return run_demo(cfg)


def test_the_challenger_is_a_verifier_and_the_committee_excludes_it(lying_demo) -> None:  # type: ignore[no-untyped-def]
    market = lying_demo.market
    (dispute_id,) = _dispute_ids(market)
    d = market.dispute(dispute_id)
    members = {str(m) for m in d["members"]}
    assert str(d["challenger"]) not in members and len(members) == 3
    job = market.job(int(d["jobId"]))
    assert str(job.owner) not in members and str(job.aggregator) not in members
    assert not members & set(market.participants(int(d["jobId"])))
    # every member revealed the winning digest, which is the recomputed (honest) result
    assert all(market.vote_of(dispute_id, m) == bytes(d["winning"]) for m in members)
    assert int(d["state"]) == 4  # corrected


def test_a_matching_round_is_checked_not_challenged(tmp_path: Path) -> None:
    cfg = DemoConfig(trainers=3, rounds=2, frivolous_challenge=False, store_dir=tmp_path / "s")
    cfg.challenge_window = 3600
    result = run_demo(cfg)
    market = result.market
    # nobody challenged the honest rounds
    assert _dispute_ids(market) == []


def test_restart_reveals_a_committed_vote_from_the_journal(tmp_path: Path) -> None:
    """A member that committed, then crashed, reveals after a restart from its journal."""
    cfg = DemoConfig(trainers=3, rounds=3, lying_aggregator=True, store_dir=tmp_path / "s")
    seen: dict[str, object] = {}

    def crash_after_commit(chain, market, verifiers):  # type: ignore[no-untyped-def]
        # one pass: the first verifier challenges, the committee (the others) commits
        for v in verifiers:
            v.step()
        if not _dispute_ids(market):  # an honest round: nothing to crash on
            return
        (dispute_id,) = _dispute_ids(market)
        members = {str(m).lower() for m in market.dispute(dispute_id)["members"]}
        member = next(v for v in verifiers if v.address.lower() in members)
        assert market.has_committed(dispute_id, member.address)
        journal_path = member.journal.path
        saved = json.loads(journal_path.read_text())["votes"][str(dispute_id)]
        assert saved["committed"] and not saved["revealed"] and len(saved["salt"]) == 64
        # the process dies; a new one opens the same journal
        reborn = VerifierService(
            market, member.store, member.account, VerifierJournal.open(journal_path)
        )
        verifiers = [reborn if v is member else v for v in verifiers]
        seen["reborn"] = reborn
        settle_disputes(chain, market, verifiers)

    import backend.simulation.demo as demo_module

    original = demo_module.settle_disputes
    demo_module.settle_disputes = crash_after_commit  # type: ignore[assignment]
    try:
        result = run_demo(cfg)
    finally:
        demo_module.settle_disputes = original  # type: ignore[assignment]
    (dispute,) = result.summary["disputes"]
    assert dispute["outcome"] == "overturned"
    reborn = seen["reborn"]
    (dispute_id,) = _dispute_ids(result.market)
    assert result.market.vote_of(dispute_id, reborn.address) != bytes(32)  # type: ignore[attr-defined]


def test_verifier_cli_status_and_register(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDMARKET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FEDMARKET_PASSWORD", "pw")
    assert runner.invoke(app, ["deploy", "--dev-account", "0"]).exit_code == 0
    done = runner.invoke(app, ["verifier", "register", "--bond", "1", "--dev-account", "3"])
    assert done.exit_code == 0, done.output
    assert "verifier in the committee pool; bond 1 ETH (0.1 ETH locked" in done.output
    again = runner.invoke(app, ["verifier", "register", "--bond", "0", "--dev-account", "3"])
    assert again.exit_code == 0, again.output  # already in the pool: only adds bond
    listed = runner.invoke(app, ["verifier", "status"])
    assert "committee pool: 1 member(s): 0x" in listed.output, listed.output
    withdraw = ["verifier", "withdraw", "1", "--dev-account", "3"]
    held = runner.invoke(app, withdraw)
    assert held.exit_code == 1 and "`fedmarket verifier leave` frees" in held.output
    left = runner.invoke(app, ["verifier", "leave", "--dev-account", "3"])
    assert left.exit_code == 0 and "left the committee pool" in left.output, left.output
    cooling = runner.invoke(app, withdraw)
    assert cooling.exit_code == 1 and "cools down until" in cooling.output, cooling.output
    twice = runner.invoke(app, ["verifier", "leave", "--dev-account", "3"])
    assert twice.exit_code == 1 and "is not in the committee pool" in twice.output
    status = runner.invoke(app, ["verifier", "status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout.strip().splitlines()[-1]) == []
    text = runner.invoke(app, ["verifier", "status"])
    assert "committee pool: 0 member(s)" in text.output and "no disputes" in text.output
    bad = runner.invoke(app, ["verifier", "challenge", "7", "1", "--dev-account", "3"])
    assert bad.exit_code == 1 and "job 7" in bad.output and "Traceback" not in bad.output


def test_a_serving_verifier_rejoins_the_pool_after_being_dropped(tmp_path: Path) -> None:
    """Dropped from the committee pool (here: it left), a serving verifier rejoins it on its
    next pass once it has free stake for the membership bond; without the role it never does."""
    from backend.chain.embedded import embedded_chain
    from backend.core.units import ETHER
    from backend.storage import LocalStore

    chain = embedded_chain()
    market, _ = MarketClient.deploy(chain, chain.dev_account(0))
    account = chain.new_funded_account(2 * ETHER)
    journal = VerifierJournal.open(tmp_path / "v.json")
    service = VerifierService(market, LocalStore(tmp_path / "store"), account, journal)
    assert service.stay_in_pool() == []  # not a verifier: nothing to do
    market.register_verifier(account, ETHER)
    assert service.stay_in_pool() == []  # in the pool already
    market.leave_pool(account)
    assert not market.in_pool(account.address)
    (action,) = service.step()
    assert action.kind == "rejoined" and market.in_pool(account.address)
    assert market.verifiers() == [account.address]
