"""`create_api`: the FastAPI app, its JSON error handlers, and the routers it serves."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.audit.api import events, jobs, meta, metrics, trainers
from backend.audit.api.deps import AuditContext
from backend.audit.schema import make_engine
from backend.protocol.http_errors import http_error_headers
from backend.storage import ContentStore

DESCRIPTION = (
    "Read-only records of the FedMarket contract and its DisputeCourt, as indexed from their "
    "events: jobs, rounds, submissions with scores and flags (each round's result of record: "
    "the post, or the correction a dispute put in its place), payouts, slashes, disputes, "
    "trainers. "
    "Amounts in wei are decimal strings; scores are fixed point (1e6 = 1.0)."
)


def create_api(
    db_url: str | Engine, *, store: ContentStore | None = None, title: str = "fedmarket audit API"
) -> FastAPI:
    """The FastAPI app over the indexer database at `db_url` (a URL or an Engine).

    With a content `store`, `/jobs/{id}/metrics` evaluates each posted global model on the
    job's validation split once the owner has revealed it (the chain itself has no accuracy).
    """
    engine = make_engine(db_url) if isinstance(db_url, str) else db_url
    app = FastAPI(title=title, version="1", description=DESCRIPTION)
    app.state.audit = AuditContext(engine=engine, store=store)
    _add_error_handlers(app)
    # the order here is the order of the paths in the OpenAPI document
    for router in (meta.router, jobs.router, metrics.router, trainers.router, events.router):
        app.include_router(router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON with a reason: 404/405/... as `http_error`, 422 with the details."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse(
            {"error": kind, "reason": str(exc.detail), "detail": None},
            status_code=exc.status_code,
            headers=http_error_headers(request, exc),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        reason = f"{where}: {first.get('msg', 'invalid')}" if first else "invalid request"
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg"))} for e in errs]
        return JSONResponse(
            {"error": "invalid_request", "reason": reason, "detail": detail}, status_code=422
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        return JSONResponse(
            {"error": "internal_error", "reason": f"{type(exc).__name__}: {exc}"}, status_code=500
        )
