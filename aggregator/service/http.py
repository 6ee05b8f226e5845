"""The aggregator's HTTP status API over an `AggregatorService`.

`create_app(service)` exposes /health, /jobs, /jobs/{id} and /jobs/{id}/rounds (OpenAPI at
/docs and /openapi.json). Errors are FastAPI's `{"detail": ...}`: 404 for a job this aggregator
does not serve, 422 for a malformed or non-positive id, 405 with `Allow` for another method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.exception_handlers import http_exception_handler
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregator.service.service import AggregatorService
from aggregator.service.state import Health, JobView, RoundView
from backend.protocol.http_errors import http_error_headers


class ErrorDetail(BaseModel):
    detail: str = Field(description="what went wrong, for people")


# Job ids are the contract's: they start at 1, so 0 and negatives are malformed (422), not 404.
JobId = Annotated[int, PathParam(ge=1, description="job id (from 1, as on chain)")]
_NOT_SERVED: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "no job with this id is aggregated here"},
}


def create_app(service: AggregatorService, *, start_watcher: bool = True) -> FastAPI:
    """The HTTP API over a service; the watcher thread runs for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_watcher:
            service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="fedmarket aggregator",
        description="Watches the chain for this aggregator's jobs, runs and posts each round "
        "once its reveal phase closes, and reports every round's reasons and scores.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(405)
    async def _method_not_allowed(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI's own body, with an `Allow` that names every method the path accepts
        allow = StarletteHTTPException(405, exc.detail, http_error_headers(request, exc))
        return await http_exception_handler(request, allow)

    _add_routes(app, service)
    return app


def _add_routes(app: FastAPI, service: AggregatorService) -> None:
    def served(job_id: int) -> None:
        if job_id not in service.jobs:
            raise HTTPException(404, f"job {job_id} is not aggregated by {service.address}")

    @app.get("/health", response_model=Health, summary="Liveness and the watcher's last pass")
    def health() -> Health:
        return service.health()

    @app.get("/jobs", response_model=list[JobView], summary="Jobs this aggregator serves")
    def jobs() -> list[JobView]:
        return service.jobs_view()

    @app.get(
        "/jobs/{job_id}",
        response_model=JobView,
        summary="One job's service state",
        responses=_NOT_SERVED,
    )
    def job(job_id: JobId) -> JobView:
        served(job_id)
        return service.job_view(job_id)

    @app.get(
        "/jobs/{job_id}/rounds",
        response_model=list[RoundView],
        summary="Per round: reasons with details, scores, accuracy/loss, transaction",
        responses=_NOT_SERVED,
    )
    def rounds(job_id: JobId) -> list[RoundView]:
        served(job_id)
        return service.rounds_view(job_id)
