"""The dashboard page (`/`, outside the schema) and the health check."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from backend.audit import queries
from backend.audit.api.deps import Context

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> HTMLResponse:
    html = resources.files("backend.audit").joinpath("dashboard/index.html").read_text("utf-8")
    return HTMLResponse(html)


@router.get("/health", tags=["meta"])
def health(context: Context) -> dict[str, Any]:
    """Liveness, and how far the index goes."""
    return {"ok": True, **queries.index_summary(context.engine)}
