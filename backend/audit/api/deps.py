"""What the routers share: the app's context (database, content store, metrics cache) as a
dependency, the bounded path and query parameters, and the 404 lookups."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from sqlalchemy.engine import Engine

from backend.audit import queries
from backend.audit.api.models import Metrics
from backend.core.errors import Reason
from backend.storage import ContentStore

MAX_LIMIT = 500
MAX_ID = 2**62
ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"


@dataclass
class AuditContext:
    """One app's state: the indexer database, the content store (if any), computed metrics."""

    engine: Engine
    store: ContentStore | None
    # (job id, posted rounds, chunks revealed, model) -> metrics: evaluating models is slow
    metrics_cache: dict[tuple[int, int, int, str], Metrics] = field(default_factory=dict)
    metrics_lock: threading.Lock = field(default_factory=threading.Lock)


async def audit_context(request: Request) -> AuditContext:
    """The context `create_api` stored on the app (async: no thread-pool hop for a lookup)."""
    context: AuditContext = request.app.state.audit
    return context


Context = Annotated[AuditContext, Depends(audit_context)]

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size (1..{MAX_LIMIT})")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="items to skip")]
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="job id (from 1)")]
RoundNo = Annotated[int, Path(ge=1, le=1000, description="round number (from 1)")]
Address = Annotated[str, Path(pattern=ADDRESS_PATTERN, description="0x-prefixed address")]
AddressQ = Annotated[
    str | None, Query(pattern=ADDRESS_PATTERN, description="only this trainer (0x address)")
]
Flagged = Annotated[bool | None, Query(description="only flagged (slashable reason) / not flagged")]
ReasonQ = Annotated[
    int | None, Query(ge=0, le=int(max(Reason)), description="only this reason code")
]


def not_found(what: str) -> HTTPException:
    return HTTPException(status_code=404, detail=what)


def require_job(context: AuditContext, job_id: int) -> dict[str, Any]:
    """The job's record; a 404 if the index does not have it."""
    job = queries.find_job(context.engine, job_id)
    if job is None:
        raise not_found(f"job {job_id} is not in the index")
    return job


def require_trainer(context: AuditContext, address: str) -> dict[str, Any]:
    """The trainer's record (address checksummed); a 404 if no event named it."""
    checksummed = queries.checksum(address)
    trainer = queries.find_trainer(context.engine, checksummed)
    if trainer is None:
        raise not_found(f"trainer {checksummed} is not in the index")
    return trainer
