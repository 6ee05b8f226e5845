""" "Why this reward": a trainer's job explained from the index (public records only), through
the function, the REST endpoint and `fedmarket trainer explain`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from backend.audit.explain import (
    REASON_MEANINGS,
    ExplainError,
    Explanation,
    JobRecords,
    explain_records,
    explain_trainer,
)
from backend.audit.schema import make_engine
from backend.cli.main import app
from backend.core.errors import Reason
from tests.audit.conftest import ROUNDS, TRAINERS, VICTIM, Indexed

runner = CliRunner()


@pytest.fixture(scope="module")
def engine(indexed: Indexed):
    return make_engine(indexed.db_url)


def _all(engine, job) -> dict[str, Explanation]:
    return {t: explain_trainer(engine, job.job_id, t) for t in job.trainers}


def test_every_reason_has_a_meaning() -> None:
    assert set(REASON_MEANINGS) == set(Reason) and all(REASON_MEANINGS.values())


def test_the_slashed_attacker_is_explained_round_by_round(engine, indexed: Indexed) -> None:
    job, market = indexed.honest, indexed.m.market
    x = explain_trainer(engine, job.job_id, indexed.attacker.lower())  # any case
    assert x.trainer == indexed.attacker and x.job_status == "settled"
    assert [r.round for r in x.per_round] == list(range(1, ROUNDS + 1))
    on_chain = [(e["round"], int(e["amount"])) for e in market.slashes(job.job_id)]
    for r, report in zip(x.per_round, job.reports, strict=True):
        outcome = next(o for o in report.outcome.outcomes if o.trainer == indexed.attacker)
        assert r.reason == int(outcome.reason) == Reason.OUTLIER and r.flagged
        assert r.reason_label == "outlier" and r.meaning == REASON_MEANINGS[Reason.OUTLIER]
        assert r.score_fp == outcome.score_fp == 0 and r.rank == TRAINERS and r.ranked == TRAINERS
        assert r.detail == "flagged outlier: score 0; 50% of the stake still locked slashed"
        assert r.slash is not None and not r.slash.reversed
        assert (r.round, r.slash.amount_wei) in on_chain and r.slash.reason == Reason.OUTLIER
        assert r.slash.rule == REASON_MEANINGS[Reason.OUTLIER]
        assert r.content_hash and r.content_hash in r.slash.evidence
        assert r.posted_tx in r.slash.evidence and "audit verify 1" in r.slash.evidence
        assert r.pool_share == 0 and r.pool_part_wei == 0 and r.chunk_revealed
    assert x.slashed_wei == sum(a for _, a in on_chain) > 0
    assert x.reward_wei == x.reward_claimed_wei == 0 and x.claimable_wei == 0
    assert x.total_score_fp == 0 and x.share == 0


def test_shares_ranks_and_rewards_match_the_contract(engine, indexed: Indexed) -> None:
    job, market = indexed.honest, indexed.m.market
    chain_job = market.job(job.job_id)
    xs = _all(engine, job)
    pool = int(chain_job.rewardPool)
    claimed = {e["trainer"]: int(e["reward"]) for e in market.claims(job.job_id)}
    assert sum(x.share or 0 for x in xs.values()) == pytest.approx(1.0)
    for k, report in enumerate(job.reports):
        rows = {t: x.per_round[k] for t, x in xs.items()}
        scores = report.outcome.scores_fp
        # one round's pool shares sum to the part of the pool the round's scores earn
        assert sum(r.pool_share for r in rows.values()) == pytest.approx(
            sum(scores) / int(chain_job.totalScore)
        )
        assert sum(r.round_share for r in rows.values()) == pytest.approx(1.0)
        for o in report.outcome.outcomes:
            r = rows[o.trainer]
            assert r.score_fp == o.score_fp and r.best_score_fp == max(scores)
            assert r.rank == 1 + sum(s > o.score_fp for s in scores)
            assert r.pool_part_wei == pool * o.score_fp // int(chain_job.totalScore)
    assert sorted(r.rank for r in (x.per_round[0] for x in xs.values())) == list(
        range(1, TRAINERS + 1)
    )  # distinct scores: ranks 1..n
    for t, x in xs.items():
        assert x.pool_wei == pool and x.pool_final
        assert x.reward_wei == x.reward_claimed_wei == claimed[t]
        assert x.total_score_fp == sum(r.score_fp for r in x.per_round)
    honest = xs[job.trainers[0]]
    assert honest.per_round[0].reason == Reason.ACCEPTED and not honest.slashes
    for r in honest.per_round:
        if r.rank == 1:
            assert r.detail == "accepted: the round's best score"
        else:
            gap = (r.best_score_fp - r.score_fp) / 1e6
            assert (
                r.detail
                == f"accepted: {gap:.4f} below the round's best ({r.best_score_fp / 1e6:.4f})"
            )
    assert honest.reward_wei > 0 and honest.slashed_wei == 0


def test_reliability_change_is_the_registrys(engine, indexed: Indexed) -> None:
    job, market = indexed.honest, indexed.m.market
    for t, x in _all(engine, job).items():
        (change,) = x.reliability
        registry = market.reliability_of(t)
        assert change.before_ppm is None  # their first job
        assert change.after_ppm == registry.ppm and change.jobs == registry.jobs
        assert change.contribution_ppm == change.after_ppm  # first job: ppm = contribution
    assert _all(engine, job)[indexed.attacker].reliability[0].after_ppm == 0


def test_a_false_flag_overturned_by_a_dispute(engine, indexed: Indexed) -> None:
    job = indexed.disputed.job
    victim = job.trainers[VICTIM]
    x = explain_trainer(engine, job.job_id, victim)
    r2 = x.per_round[1]
    assert r2.corrected and r2.dispute == "overturned" and r2.reason == Reason.ACCEPTED
    assert r2.overturned_reason_label == "outlier" and r2.overturned_score_fp == 0
    assert r2.detail.startswith("the aggregator posted outlier (score 0.0000); a dispute")
    assert r2.slash is None and r2.score_fp > 0
    (slash,) = x.slashes
    assert slash.round == 2 and slash.reversed and "reversed" in slash.evidence
    assert x.slashed_wei == 0 and x.reward_wei > 0


def test_a_running_job_is_a_projection(engine, indexed: Indexed) -> None:
    job = indexed.pending
    xs = _all(engine, job)
    for x in xs.values():
        assert not x.pool_final and x.claimable_wei == 0 and x.reward_claimed_wei is None
        assert [r.state for r in x.per_round] == ["posted", "open"]
        assert x.per_round[0].chunk_revealed is False
        assert x.per_round[1].detail == "not posted yet" and x.per_round[1].pool_share is None
        assert any("not settled" in n for n in x.notes)
    reward = int(indexed.m.market.job(job.job_id).reward)
    assert sum(x.reward_wei for x in xs.values()) <= reward
    assert reward - sum(x.reward_wei for x in xs.values()) < len(xs)  # floor dust only


def test_unknown_job_or_non_participant(engine, indexed: Indexed) -> None:
    with pytest.raises(ExplainError, match="job 999 is not in the index"):
        explain_trainer(engine, 999, indexed.attacker)
    outsider = indexed.disputed.job.trainers[0]
    with pytest.raises(ExplainError, match="did not join job 1"):
        explain_trainer(engine, 1, outsider)


def test_the_api_serves_the_explanation(api_client, engine, indexed: Indexed) -> None:
    url = f"/jobs/1/trainers/{indexed.attacker}/explain"
    body = api_client.get(url).json()
    assert body == json.loads(json.dumps(explain_trainer(engine, 1, indexed.attacker).to_dict()))
    assert isinstance(body["slashed_wei"], str) and len(body["per_round"]) == ROUNDS
    assert body["per_round"][0]["slash"]["reason_label"] == "outlier"
    missing = api_client.get("/jobs/999/trainers/" + indexed.attacker + "/explain")
    assert missing.status_code == 404 and "not in the index" in missing.json()["reason"]
    outsider = indexed.disputed.job.trainers[0]
    other = api_client.get(f"/jobs/1/trainers/{outsider}/explain")
    assert other.status_code == 404 and "did not join job 1" in other.json()["reason"]
    assert api_client.get("/jobs/1/trainers/0x12/explain").status_code == 422


def _cli(indexed: Indexed, monkeypatch, args: list[str]):
    monkeypatch.setenv("FEDMARKET_MARKET_ADDRESS", indexed.m.market.address)
    monkeypatch.setattr("backend.cli.trainer._open_index", lambda ctx, db: _Fixed(indexed))
    return runner.invoke(app, ["trainer", "explain", *args], terminal_width=200)


class _Fixed:
    """The fixture's index, already up to date (the CLI would index its own chain)."""

    def __init__(self, indexed: Indexed) -> None:
        self.engine = make_engine(indexed.db_url)


def test_cli_explains_as_a_table_and_as_json(indexed: Indexed, monkeypatch) -> None:
    attacker = indexed.attacker
    res = _cli(indexed, monkeypatch, ["1", "--address", attacker, "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout.strip().splitlines()[-1])
    assert body["trainer"] == attacker and body["per_round"][2]["reason_label"] == "outlier"
    res = _cli(indexed, monkeypatch, ["1", "--address", attacker])
    assert res.exit_code == 0, res.output
    assert "outlier" in res.stdout and "slashed" in res.stdout and "reliability" in res.stdout
    assert "4/4" in res.stdout  # ranked last of four


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["999", "--address", "ATTACKER"], "job 999 is not in the index"),
        (["1", "--address", "OUTSIDER"], "did not join job 1"),
        (["1", "--address", "0x12"], "not a 0x address"),
    ],
)
def test_cli_errors_are_one_line(indexed: Indexed, monkeypatch, args, message) -> None:
    names = {"ATTACKER": indexed.attacker, "OUTSIDER": indexed.disputed.job.trainers[0]}
    res = _cli(indexed, monkeypatch, [names.get(a, a) for a in args])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr


def test_recompute_adds_the_checks_own_words(engine, indexed: Indexed) -> None:
    from backend.audit.verify import recomputed_details

    job, m = indexed.honest, indexed.m
    checked = recomputed_details(m.market, m.store, job.job_id)
    assert sorted(checked) == list(range(1, ROUNDS + 1))
    x = explain_trainer(engine, job.job_id, indexed.attacker, checked)
    for r, report in zip(x.per_round, job.reports, strict=True):
        outcome = next(o for o in report.outcome.outcomes if o.trainer == indexed.attacker)
        assert r.checked_detail == outcome.detail and "consensus rule" in r.checked_detail
    # a re-run that disagrees with the record says so
    lie = {1: {indexed.attacker: (int(Reason.ACCEPTED), "")}}
    r1 = explain_trainer(engine, job.job_id, indexed.attacker, lie).per_round[0]
    assert r1.checked_detail == "the re-run gives accepted, not the record's: "
    # the running job's round 1 has no chunk revealed yet: nothing is re-run, nothing guessed
    assert recomputed_details(m.market, m.store, indexed.pending.job_id) == {}


# -- the pure function on hand-made records: what the shared market has no case of -------------
A, B = "0x" + "a" * 40, "0x" + "b" * 40
STAKE_WEI, REWARD_WEI = 10**18, 10 * 10**18


def _records(status: str, reasons_b: list[int], **job: object) -> JobRecords:
    """Two trainers, len(reasons_b) posted rounds: A scores 0.02 each round, B 0.01 unless its
    reason is not 0."""
    rounds, subs = [], []
    for k, reason in enumerate(reasons_b, start=1):
        rounds.append(
            {
                "round": k,
                "posted": True,
                "voided": False,
                "corrected": False,
                "dispute": None,
                "model_cid": "m",
                "posted_tx": f"0x{k}",
                "chunk_hash": None,
            }
        )
        subs.append({"round": k, "trainer": A, "score": 20_000, "reason": 0})
        subs.append({"round": k, "trainer": B, "score": 0 if reason else 10_000, "reason": reason})
    totals = {t: sum(s["score"] for s in subs if s["trainer"] == t) for t in (A, B)}
    participants = [
        {
            "trainer": t,
            "total_score": totals[t],
            "claimed": False,
            "reward_wei": None,
            "slashed_wei": "0",
        }
        for t in (A, B)
    ]
    base = {
        "job_id": 9,
        "status": status,
        "rounds": 3,
        "reward_wei": str(REWARD_WEI),
        "stake_required_wei": str(STAKE_WEI),
        "slash_bps": 5000,
        "slashed_pool_wei": "0",
        "reward_pool_wei": None,
        "owner_fault": None,
        "aggregator_bond_wei": "0",
    }
    return JobRecords({**base, **job}, participants, rounds, subs, [], [])


def test_a_missed_round_is_charged_at_settlement_and_the_projection_says_so() -> None:
    x = explain_records(_records("running", [0, int(Reason.MISSING)]), B)
    charge = STAKE_WEI * 5000 // (2 * 10_000)
    assert x.pending_charge_wei == charge and x.pool_wei == REWARD_WEI + charge
    missed = x.per_round[1]
    assert missed.reason_label == "missing" and not missed.flagged and missed.rank == 2
    assert (
        missed.detail
        == f"no valid reveal: score 0, and {charge} wei is charged for it at settlement"
    )
    # B scored 0.01 of the job's 0.05: a fifth of the pool, all of it from round 1
    assert x.share == pytest.approx(0.2) and x.per_round[0].pool_share == pytest.approx(0.2)
    assert x.reward_wei == (REWARD_WEI + charge) // 5 and x.claimable_wei == 0
    a = explain_records(_records("running", [0, int(Reason.MISSING)]), A)
    assert a.pending_charge_wei == 0 and a.reward_wei + x.reward_wei == x.pool_wei


def test_an_owner_forfeit_with_no_score_splits_the_pool_equally() -> None:
    rec = _records(
        "abandoned", [int(Reason.UNAVAILABLE)], owner_fault=True, reward_pool_wei=str(REWARD_WEI)
    )
    zeroed = [{**s, "score": 0} for s in rec.submissions]
    rec = JobRecords(
        rec.job, [{**p, "total_score": 0} for p in rec.participants], rec.rounds, zeroed, [], []
    )
    x = explain_records(rec, B)
    assert x.pool_final and x.pool_wei == REWARD_WEI and x.reward_wei == REWARD_WEI // 2
    assert x.claimable_wei == REWARD_WEI // 2 and x.per_round[0].pool_share == 0
    assert x.per_round[0].detail == "content unavailable to the aggregator: score 0, not slashed"
    assert "no trainer scored: the owner forfeited, so the pool is split equally" in x.notes
