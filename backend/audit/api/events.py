"""The raw record: every indexed contract event, filterable."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from backend.audit import queries
from backend.audit.api.deps import MAX_ID, AddressQ, Context, Limit, Offset
from backend.audit.api.models import ERROR_RESPONSES, Event, Page

router = APIRouter(tags=["records"], responses=ERROR_RESPONSES)


@router.get("/events", response_model=Page[Event])
def events(
    context: Context,
    limit: Limit = 100,
    offset: Offset = 0,
    name: Annotated[str | None, Query(max_length=32, description="event name")] = None,
    job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    trainer: AddressQ = None,
) -> dict[str, Any]:
    """Every indexed contract event, in chain order: the raw record."""
    q = queries.events_query(name, job_id, trainer)
    return queries.page(context.engine, q, limit, offset, queries.event_row)
