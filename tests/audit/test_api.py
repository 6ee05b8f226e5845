"""The REST API: records, filters, pagination, JSON errors (404 / 405 / 422), OpenAPI."""

from __future__ import annotations

import re

import numpy as np

from tests.audit.conftest import ROUNDS, TRAINERS, VICTIM, Indexed
from tests.audit.jobs import BOND

UNDECLARED = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _job_on_chain(indexed: Indexed, job_id: int):
    return indexed.m.market.job(job_id)


def test_jobs_and_one_job(api_client, indexed: Indexed) -> None:
    page = api_client.get("/jobs").json()
    assert page["total"] == 3 and page["limit"] == 50 and page["offset"] == 0
    assert [j["job_id"] for j in page["items"]] == [3, 2, 1]  # newest first
    job = page["items"][-1]
    chain_job = _job_on_chain(indexed, 1)
    assert job["job_id"] == indexed.honest.job_id == 1 and job["status"] == "settled"
    assert job["posted_rounds"] == job["rounds"] == ROUNDS and job["trainers"] == TRAINERS
    assert int(job["slashed_pool_wei"]) == int(chain_job.slashedPool) > 0
    assert int(job["owner_refund_wei"]) == int(chain_job.ownerRefund)
    assert job["min_reliability_weight_wei"] == str(chain_job.minReliabilityWeight) == "0"
    assert job["validation_revealed"] is True and job["chunks_revealed"] == ROUNDS
    assert job["validation_root"] == "0x" + bytes(chain_job.validationRoot).hex()
    assert int(job["aggregator_bond_wei"]) == BOND and job["aggregator_bond_slashed_wei"] == "0"
    assert job["disputes"] == 0 and job["dispute_open"] is False and job["owner_fault"] is None
    assert api_client.get("/jobs/1").json() == job
    running = api_client.get("/jobs", params={"status": "running"}).json()
    assert [j["job_id"] for j in running["items"]] == [indexed.pending.job_id]
    assert running["items"][0]["chunks_revealed"] == 0
    assert running["items"][0]["validation_revealed"] is False
    assert api_client.get("/jobs", params={"trainer": indexed.attacker}).json()["total"] == 1


def test_rounds_submissions_flags_and_reasons(api_client, indexed: Indexed) -> None:
    job = indexed.honest
    rounds = api_client.get(f"/jobs/{job.job_id}/rounds").json()["items"]
    assert [r["round"] for r in rounds] == list(range(1, ROUNDS + 1))
    for r, report in zip(rounds, job.reports, strict=True):
        assert r["posted"] and r["model_hash"] == "0x" + report.model_hash.hex()
        assert r["total_score"] == sum(report.outcome.scores_fp)
        assert r["accepted"] == TRAINERS - 1 and r["flagged"] == 1
        assert r["chunk_cid"] == job.chunk_cids[r["round"] - 1] and r["final_at"] is not None
        assert r["corrected"] is False and r["dispute"] is None
        subs = api_client.get(f"/jobs/{job.job_id}/rounds/{r['round']}/submissions").json()
        assert subs["total"] == TRAINERS
        by_trainer = {s["trainer"]: s for s in subs["items"]}
        for o in report.outcome.outcomes:
            s = by_trainer[o.trainer]
            assert s["score"] == o.score_fp and s["reason"] == int(o.reason)
            assert s["reason_label"] == o.reason.label and s["flagged"] == o.reason.slashable
            assert s["overturned_score"] is None and s["overturned_reason"] is None
    flagged = api_client.get(f"/jobs/{job.job_id}/submissions", params={"flagged": True}).json()
    assert flagged["total"] == ROUNDS
    assert {s["trainer"] for s in flagged["items"]} == {indexed.attacker}
    assert all(
        s["reason_label"] == "outlier" and int(s["slashed_wei"]) > 0 for s in flagged["items"]
    )
    honest = api_client.get(f"/jobs/{job.job_id}/submissions", params={"flagged": False}).json()
    assert honest["total"] == (TRAINERS - 1) * ROUNDS


def test_payouts_slashes_and_trainers(api_client, indexed: Indexed) -> None:
    market, job = indexed.m.market, indexed.honest
    claims = {c["trainer"]: c for c in market.claims(job.job_id)}
    payouts = {
        p["trainer"]: p for p in api_client.get(f"/jobs/{job.job_id}/payouts").json()["items"]
    }
    for t in job.trainers:
        p, onchain = payouts[t], market.participant(job.job_id, t)
        assert int(p["reward_wei"]) == int(claims[t]["reward"])
        assert p["flagged_rounds"] == int(onchain["flaggedRounds"]) and p["claimed"] is True
        assert p["reliability_ppm_after"] == market.reliability_of(t)[0]
        detail = api_client.get(f"/trainers/{t.lower()}").json()
        assert detail["address"] == t and detail["jobs_joined"] == 1
        assert int(detail["stake_balance_wei"]) == market.account_of(t)["balance"]
        rel = market.reliability_of(t)
        assert (detail["reliability_ppm"], detail["reliability_jobs"]) == (rel.ppm, rel.jobs)
        assert int(detail["reliability_weight_wei"]) == rel.weight > 0
        assert [h["job_id"] for h in detail["history"]] == [job.job_id]
    slashes = api_client.get(f"/jobs/{job.job_id}/slashes").json()["items"]
    assert sum(int(x["amount_wei"]) for x in slashes) == int(market.job(job.job_id).slashedPool)
    assert {x["reason_label"] for x in slashes} == {"outlier"}
    assert not any(x["reversed"] for x in slashes)
    bad = indexed.attacker
    assert int(payouts[bad]["slashed_wei"]) == sum(int(x["amount_wei"]) for x in slashes)
    assert api_client.get(f"/trainers/{bad}/slashes").json()["total"] == ROUNDS
    assert (
        api_client.get(f"/trainers/{bad}/submissions", params={"flagged": True}).json()["total"]
        == ROUNDS
    )
    trainers = api_client.get("/trainers", params={"min_reliability_ppm": 1}).json()
    assert bad not in {t["address"] for t in trainers["items"]}
    assert trainers["total"] == (TRAINERS - 1) + 3  # job 2's trainers all contributed


def test_a_corrected_round_and_its_disputes(api_client, indexed: Indexed) -> None:
    d, market = indexed.disputed, indexed.m.market
    job_id, victim = d.job.job_id, d.job.trainers[VICTIM]
    job = api_client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "settled" and job["disputes"] == 2 and job["dispute_open"] is False
    assert job["aggregator_bond_slashed_wei"] == str(BOND) and job["slashed_pool_wei"] == "0"
    assert job["model_hash"] == "0x" + market.corrections(job_id)[2].model_hash.hex()
    rounds = api_client.get(f"/jobs/{job_id}/rounds").json()["items"]
    assert [(r["round"], r["dispute"], r["corrected"]) for r in rounds] == [
        (1, "upheld", False),
        (2, "overturned", True),
    ]
    sub = api_client.get(f"/jobs/{job_id}/rounds/2/submissions", params={"trainer": victim}).json()[
        "items"
    ][0]
    assert sub["reason"] == 0 and sub["flagged"] is False and sub["overturned_reason"] == 8
    flagged = api_client.get(f"/jobs/{job_id}/submissions", params={"flagged": True}).json()
    assert flagged["total"] == 0  # the false flag is not the result of record
    (slash,) = api_client.get(f"/jobs/{job_id}/slashes").json()["items"]
    assert slash["trainer"] == victim and slash["reversed"] is True
    payouts = api_client.get(f"/jobs/{job_id}/payouts").json()["items"]
    p = next(x for x in payouts if x["trainer"] == victim)
    assert p["slashed_wei"] == "0" and p["flagged_rounds"] == 0
    disputes = api_client.get(f"/jobs/{job_id}/disputes").json()
    assert disputes["total"] == 2
    upheld, overturned = disputes["items"]
    assert (upheld["round"], upheld["outcome"], upheld["corrected"]) == (1, "upheld", False)
    assert upheld["challenger"] == d.job.trainers[0]
    assert upheld["aggregator_bond_slashed_wei"] == "0"
    assert (overturned["round"], overturned["outcome"], overturned["corrected"]) == (
        2,
        "overturned",
        True,
    )
    assert overturned["challenger"] == d.challenger and overturned["members"] == d.members
    assert overturned["aggregator_bond_slashed_wei"] == str(BOND)
    assert [v["member"] for v in overturned["votes"]] == d.members
    assert {v["digest"] for v in overturned["votes"]} == {"0x" + d.round2.digest.hex()}
    assert api_client.get("/jobs/1/disputes").json()["total"] == 0
    assert api_client.get("/jobs/999/disputes").status_code == 404
    events = api_client.get("/events", params={"name": "DisputeResolved"}).json()["items"]
    assert [(e["job_id"], e["args"]["state"]) for e in events] == [(job_id, 2), (job_id, 3)]


def test_pagination_is_bounded_and_consistent(api_client, indexed) -> None:
    job_id = indexed.honest.job_id
    whole = api_client.get(f"/jobs/{job_id}/submissions").json()["items"]
    pages = []
    for offset in range(0, len(whole), 5):
        pages += api_client.get(
            f"/jobs/{job_id}/submissions", params={"limit": 5, "offset": offset}
        ).json()["items"]
    assert pages == whole
    events = api_client.get("/events", params={"name": "RoundPosted", "limit": 2}).json()
    assert events["total"] == ROUNDS + 2 + 1 and len(events["items"]) == 2
    assert events["items"][0]["args"]["round"] == 1


def test_errors_are_json_with_a_reason(api_client) -> None:
    cases = {
        "/jobs/999": 404,
        "/jobs/1/rounds/999/submissions": 404,
        "/jobs/999/payouts": 404,
        "/jobs/999/rounds": 404,
        "/trainers/0x0000000000000000000000000000000000000001": 404,
        "/trainers/not-an-address": 422,
        "/jobs/0": 422,
        "/jobs/-1": 422,
        "/jobs/-1/rounds": 422,
        "/jobs/1/rounds/0/submissions": 422,
        "/jobs/1/rounds/-1/submissions": 422,
        "/jobs/1/rounds/1001/submissions": 422,
        "/jobs/abc": 422,
        "/jobs?limit=0": 422,
        "/jobs?limit=100000": 422,
        "/jobs?offset=-1": 422,
        "/jobs?status=exploded": 422,
        "/jobs/1/submissions?flagged=maybe": 422,
        "/jobs/1/submissions?reason=12": 422,
        "/jobs/99999999999999999999999": 422,
        "/nowhere": 404,
    }
    for url, status in cases.items():
        r = api_client.get(url)
        assert r.status_code == status, (url, r.status_code, r.text)
        body = r.json()
        assert body["reason"] and body["error"], (url, body)


def test_undeclared_methods_get_405_with_allow(api_client) -> None:
    """RFC 9110 §15.5.6, as schemathesis' coverage phase checks it (unsupported_method)."""
    paths = api_client.get("/openapi.json").json()["paths"]
    for template, operations in paths.items():
        # the router answers 405 before any parameter is validated: any value will do
        url = re.sub(r"\{[^}]+\}", "1", template)
        declared = {m.upper() for m in operations}
        for method in sorted(set(UNDECLARED) - declared):
            r = api_client.request(method, url)
            assert r.status_code == 405, (method, url, r.status_code)
            assert set(r.headers["allow"].split(", ")) == declared, (method, url)
            assert r.json() == {
                "error": "http_error",
                "reason": "Method Not Allowed",
                "detail": None,
            }
    # routes outside the spec too (the dashboard, FastAPI's docs)
    assert api_client.put("/").headers["allow"] == "GET"
    assert api_client.post("/docs").headers["allow"] == "GET, HEAD"


def test_ids_are_bounded_and_their_404_documented(api_client) -> None:
    spec = api_client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        get = operations["get"]
        for param in get.get("parameters", []):
            if param["in"] == "path" and param["schema"].get("type") == "integer":
                assert param["schema"]["minimum"] == 1 and "maximum" in param["schema"], path
            if param["in"] == "path" and param["name"] == "address":
                assert param["schema"]["pattern"], path
        if "{" in path:
            body = get["responses"]["404"]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorBody"}, path


def test_read_only_and_documented(api_client) -> None:
    spec = api_client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in (
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/rounds",
        "/jobs/{job_id}/rounds/{round_no}/submissions",
        "/jobs/{job_id}/payouts",
        "/jobs/{job_id}/slashes",
        "/jobs/{job_id}/disputes",
        "/trainers/{address}",
        "/events",
    ):
        assert set(paths[p]) == {"get"}, p
    assert api_client.get("/docs").status_code == 200


def test_metrics_on_the_revealed_validation_chunks(api_client, indexed: Indexed) -> None:
    from backend.core.models import evaluate
    from backend.core.valchunks import split_chunks

    job = indexed.honest
    m = api_client.get(f"/jobs/{job.job_id}/metrics").json()
    assert m["available"] is True and len(m["rounds"]) == ROUNDS
    assert "3 validation chunk(s)" in m["reason"]
    # every chunk revealed: the models are evaluated on them all, i.e. the whole split
    parts = split_chunks(job.validation, ROUNDS)
    x, y = np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts])
    for got, report in zip(m["rounds"], job.reports, strict=True):
        loss, acc = evaluate(job.spec.model, report.outcome.next_weights, x, y)
        assert abs(got["validation_loss"] - loss) < 1e-6
        assert abs(got["validation_accuracy"] - acc) < 1e-9
    pending = api_client.get(f"/jobs/{indexed.pending.job_id}/metrics").json()
    assert pending["available"] is False and "no validation chunk" in pending["reason"]


def test_dashboard_page_is_served_without_external_resources(api_client) -> None:
    r = api_client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert "<svg" in html or "createElementNS" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
