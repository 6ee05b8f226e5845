"""The REST API: records, filters, pagination, JSON errors (404 / 405 / 422), OpenAPI."""

from __future__ import annotations

import re

from tests.audit.conftest import ROUNDS, TRAINERS

UNDECLARED = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _attacker(indexed) -> str:
    return next(t["address"] for t in indexed.demo.summary["trainers"] if t["attack"])


def test_jobs_and_one_job(api_client, indexed) -> None:
    page = api_client.get("/jobs").json()
    assert page["total"] == 1 and page["limit"] == 50 and page["offset"] == 0
    job = page["items"][0]
    s = indexed.demo.summary
    assert job["job_id"] == s["job_id"] and job["status"] == "settled"
    assert job["posted_rounds"] == job["rounds"] == ROUNDS and job["trainers"] == TRAINERS
    assert int(job["slashed_pool_wei"]) == s["slashed_to_pool_wei"]
    assert int(job["owner_refund_wei"]) == s["refund_wei"]
    assert job["validation_revealed"] is True
    assert api_client.get(f"/jobs/{s['job_id']}").json() == job
    assert api_client.get("/jobs", params={"status": "running"}).json()["total"] == 0
    assert api_client.get("/jobs", params={"trainer": _attacker(indexed)}).json()["total"] == 1


def test_rounds_submissions_flags_and_reasons(api_client, indexed) -> None:
    job_id = indexed.demo.summary["job_id"]
    rounds = api_client.get(f"/jobs/{job_id}/rounds").json()["items"]
    assert [r["round"] for r in rounds] == list(range(1, ROUNDS + 1))
    for r, report in zip(rounds, indexed.demo.rounds, strict=True):
        assert r["posted"] and r["model_hash"] == "0x" + report.model_hash.hex()
        assert r["total_score"] == sum(report.outcome.scores_fp)
        assert r["accepted"] == TRAINERS - 1 and r["flagged"] == 1
        subs = api_client.get(f"/jobs/{job_id}/rounds/{r['round']}/submissions").json()
        assert subs["total"] == TRAINERS
        by_trainer = {s["trainer"]: s for s in subs["items"]}
        for o in report.outcome.outcomes:
            s = by_trainer[o.trainer]
            assert s["score"] == o.score_fp and s["reason"] == int(o.reason)
            assert s["reason_label"] == o.reason.label and s["flagged"] == o.reason.slashable
    flagged = api_client.get(f"/jobs/{job_id}/submissions", params={"flagged": True}).json()
    assert flagged["total"] == ROUNDS
    assert {s["trainer"] for s in flagged["items"]} == {_attacker(indexed)}
    assert all(
        s["reason_label"] == "outlier" and int(s["slashed_wei"]) > 0 for s in flagged["items"]
    )
    honest = api_client.get(f"/jobs/{job_id}/submissions", params={"flagged": False}).json()
    assert honest["total"] == (TRAINERS - 1) * ROUNDS


def test_payouts_slashes_and_trainers(api_client, indexed) -> None:
    s = indexed.demo.summary
    job_id = s["job_id"]
    payouts = {p["trainer"]: p for p in api_client.get(f"/jobs/{job_id}/payouts").json()["items"]}
    for t in s["trainers"]:
        p = payouts[t["address"]]
        assert int(p["reward_wei"]) == t["reward_wei"] and int(p["slashed_wei"]) == t["slashed_wei"]
        assert p["flagged_rounds"] == t["flagged_rounds"] and p["claimed"] is True
        assert p["reliability_ppm_after"] / 1e6 == t["reliability"]
        detail = api_client.get(f"/trainers/{t['address'].lower()}").json()
        assert detail["address"] == t["address"] and detail["jobs_joined"] == 1
        assert detail["reliability_ppm"] / 1e6 == t["reliability"]
        assert [h["job_id"] for h in detail["history"]] == [job_id]
    slashes = api_client.get(f"/jobs/{job_id}/slashes").json()["items"]
    assert sum(int(x["amount_wei"]) for x in slashes) == s["slashed_to_pool_wei"]
    assert {x["reason_label"] for x in slashes} == {"outlier"}
    bad = _attacker(indexed)
    assert api_client.get(f"/trainers/{bad}/slashes").json()["total"] == ROUNDS
    assert (
        api_client.get(f"/trainers/{bad}/submissions", params={"flagged": True}).json()["total"]
        == ROUNDS
    )
    trainers = api_client.get("/trainers", params={"min_reliability_ppm": 1}).json()
    assert bad not in {t["address"] for t in trainers["items"]}
    assert trainers["total"] == TRAINERS - 1


def test_pagination_is_bounded_and_consistent(api_client, indexed) -> None:
    job_id = indexed.demo.summary["job_id"]
    whole = api_client.get(f"/jobs/{job_id}/submissions").json()["items"]
    pages = []
    for offset in range(0, len(whole), 5):
        pages += api_client.get(
            f"/jobs/{job_id}/submissions", params={"limit": 5, "offset": offset}
        ).json()["items"]
    assert pages == whole
    events = api_client.get("/events", params={"name": "RoundPosted", "limit": 2}).json()
    assert events["total"] == ROUNDS and len(events["items"]) == 2
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
        "/trainers/{address}",
        "/events",
    ):
        assert set(paths[p]) == {"get"}, p
    assert api_client.get("/docs").status_code == 200


def test_metrics_from_the_revealed_validation_split(api_client, indexed) -> None:
    job_id = indexed.demo.summary["job_id"]
    m = api_client.get(f"/jobs/{job_id}/metrics").json()
    assert m["available"] is True and len(m["rounds"]) == ROUNDS
    for got, report in zip(m["rounds"], indexed.demo.rounds, strict=True):
        assert abs(got["validation_loss"] - report.outcome.loss_after) < 1e-9
        assert abs(got["validation_accuracy"] - report.outcome.accuracy_after) < 1e-9


def test_dashboard_page_is_served_without_external_resources(api_client) -> None:
    r = api_client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert "<svg" in html or "createElementNS" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
