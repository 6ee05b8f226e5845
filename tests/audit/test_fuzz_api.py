"""Fuzz the REST API from its own OpenAPI spec (schemathesis, in-process ASGI): no 5xx.

Every operation gets positive (schema-valid) and negative (schema-violating) requests; a
valid request must get 2xx/404, an invalid one 4xx, and never a server error; every answer
must be as documented (status code, content type, body schema).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

EXAMPLES = 20


@pytest.fixture(scope="module")
def api_schema(indexed):
    from backend.audit.api import create_api

    app = create_api(indexed.db_url, store=indexed.m.store)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _fuzzer(op, mode, seen: dict[str, set[int]]):
    @given(case=op.as_strategy(generation_mode=mode))
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
        status = response.status_code
        seen.setdefault(op.path, set()).add(status)
        where = (op.path, case.path_parameters, case.query, response.text[:300])
        assert status < 500, where
        ctype = response.headers.get("content-type") or [""]
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith("application/json"), where
        if status >= 400:
            assert response.json().get("reason"), where

    return run


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_produces_a_server_error(api_schema, mode) -> None:
    operations = [op.ok() for op in api_schema.get_all_operations()]
    assert len(operations) >= 12
    seen: dict[str, set[int]] = {}
    for op in operations:
        run = _fuzzer(op, mode, seen)
        try:
            run()
        except Unsatisfiable:
            # an operation without parameters has no schema-violating request to make
            assert mode == GenerationMode.NEGATIVE and not op.path_parameters and not op.query
    assert len(seen) >= 12, seen
