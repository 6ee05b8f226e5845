"""The aggregator service's HTTP API: 405 with `Allow`, bounded ids (422), documented 404s,
and a schemathesis fuzz of its own OpenAPI spec (no 5xx, every answer as documented)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient
from service_helpers import make_job, new_service, play_round

from aggregator.service import AggregatorService, create_app
from backend.chain.embedded import embedded_chain
from backend.chain.market import ROLE_AGGREGATOR, MarketClient
from backend.storage import LocalStore

ETHER = 10**18
UNKNOWN_JOB = 999
EXAMPLES = 10
UNDECLARED = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass
class Served:
    service: AggregatorService
    job_id: int


@pytest.fixture(scope="module")
def served(tmp_path_factory, digits) -> Served:
    """One job with round 1 posted: module-scoped, building it is the slow part."""
    root = tmp_path_factory.mktemp("aggregator-http")
    chain = embedded_chain()
    market, _ = MarketClient.deploy(chain, chain.dev_account(0))
    store = LocalStore(root / "store")
    account = chain.new_funded_account(11 * ETHER)
    market.register_role(account, ROLE_AGGREGATOR, 10 * ETHER)
    job = make_job(chain, market, store, account.address, digits, rounds=2, seed=7)
    vals = {job.job_id: job.package}
    service = new_service(market, store, account, root / "journal", validation=vals)
    service.poll_once()
    play_round(job, 1)
    assert service.poll_once()[job.job_id] == "posted round 1"
    return Served(service, job.job_id)


def _app(served: Served) -> FastAPI:
    return create_app(served.service, start_watcher=False)


@pytest.fixture
def http(served: Served) -> Iterator[TestClient]:
    with TestClient(_app(served)) as client:
        yield client


def test_known_job_and_its_rounds(http, served) -> None:
    assert http.get(f"/jobs/{served.job_id}").json()["posted_rounds"] == [1]
    assert [r["round"] for r in http.get(f"/jobs/{served.job_id}/rounds").json()] == [1]


def test_405_names_the_methods_each_path_accepts(http, served) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for template, operations in paths.items():
        url = template.replace("{job_id}", str(served.job_id))
        declared = {m.upper() for m in operations}
        for method in sorted(set(UNDECLARED) - declared):
            r = http.request(method, url)
            assert r.status_code == 405, (method, url)
            assert set(r.headers["allow"].split(", ")) == declared, (method, url)
            assert r.json() == {"detail": "Method Not Allowed"}  # FastAPI's body, kept


def test_allow_covers_every_route_at_a_path_and_mounts(served, tmp_path) -> None:
    # Starlette's own Allow names only the first route that matched the path
    app = _app(served)
    app.add_api_route("/health", lambda: {}, methods=["POST"])
    app.mount("/static", StaticFiles(directory=tmp_path))
    with TestClient(app) as client:
        assert client.put("/health").headers["allow"] == "GET, POST"
        r = client.post("/static/anything")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("url", ["/jobs/-1", "/jobs/0", "/jobs/-1/rounds", "/jobs/0/rounds"])
def test_non_positive_ids_are_422(http, url) -> None:
    r = http.get(url)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["path", "job_id"]


def test_unknown_job_is_404_and_documented(http) -> None:
    for url in (f"/jobs/{UNKNOWN_JOB}", f"/jobs/{UNKNOWN_JOB}/rounds"):
        r = http.get(url)
        assert r.status_code == 404 and "not aggregated" in r.json()["detail"], url
    spec = http.get("/openapi.json").json()
    assert spec["components"]["schemas"]["ErrorDetail"]["required"] == ["detail"]
    for path in ("/jobs/{job_id}", "/jobs/{job_id}/rounds"):
        get = spec["paths"][path]["get"]
        body = get["responses"]["404"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ErrorDetail"}, path
        (param,) = get["parameters"]
        assert param["schema"]["minimum"] == 1, path


# -- schemathesis -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api_schema(served):
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
    return schemathesis.openapi.from_asgi("/openapi.json", _app(served))


def _fuzz(op, mode, ids: dict[str, int] | None, seen: dict[str, set[int]]) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    @given(case=op.as_strategy(generation_mode=mode, path_parameters=ids))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def run(case) -> None:
        # schemathesis' default checks: no 5xx, a documented status, content type and body
        response = case.call_and_validate()
        seen.setdefault(op.path, set()).add(response.status_code)

    try:
        run()
    except Unsatisfiable:
        # an operation without parameters has no schema-violating request to make
        assert mode == GenerationMode.NEGATIVE and not op.path_parameters


def test_fuzz_no_server_error_and_answers_as_documented(api_schema, served) -> None:
    from schemathesis import GenerationMode

    seen: dict[str, set[int]] = {}
    for op in (op.ok() for op in api_schema.get_all_operations()):
        _fuzz(op, GenerationMode.POSITIVE, None, seen)
        _fuzz(op, GenerationMode.NEGATIVE, None, seen)
        if "{job_id}" in op.path:  # random ids miss the one served job: ask for it too
            _fuzz(op, GenerationMode.POSITIVE, {"job_id": served.job_id}, seen)
    for path in ("/jobs/{job_id}", "/jobs/{job_id}/rounds"):
        assert seen[path] == {200, 404, 422}, seen
