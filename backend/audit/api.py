"""The auditors' read-only REST API over the indexer's database (FastAPI, OpenAPI-documented).

`create_api(db_url, store=...)` builds the app; `fedmarket api serve` runs it with uvicorn.
Every list is paginated (limit/offset, bounded) and filterable; every error is JSON with a
reason: 404 for an unknown job/round/trainer, 422 for bad parameters, 405 (with `Allow`) for
a method a path does not serve, never a 500.
The dashboard (`/`) is a static page in this package that draws its charts from these endpoints.
"""

from __future__ import annotations

import json
import threading
from enum import StrEnum
from importlib import resources
from typing import Annotated, Any, Generic, TypeVar

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.audit.indexer import (
    STATUS_NAMES,
    events_t,
    jobs_t,
    make_engine,
    participants_t,
    rounds_t,
    slashes_t,
    submissions_t,
    trainers_t,
)
from backend.core.errors import Reason
from backend.protocol.http_errors import http_error_headers

MAX_LIMIT = 500
MAX_ID = 2**62
ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
T = TypeVar("T")


class StatusName(StrEnum):
    created = "created"
    running = "running"
    finished = "finished"
    settled = "settled"
    abandoned = "abandoned"
    cancelled = "cancelled"


class ErrorBody(BaseModel):
    error: str = Field(description="not_found | invalid_request | internal_error")
    reason: str = Field(description="what went wrong, for people")
    detail: Any = None


class Page(BaseModel, Generic[T]):
    total: int
    limit: int
    offset: int
    items: list[T]


class Job(BaseModel):
    job_id: int
    status: str
    owner: str
    aggregator: str
    reward_wei: str
    stake_required_wei: str
    rounds: int
    posted_rounds: int
    min_trainers: int
    max_trainers: int
    trainers: int
    slash_bps: int
    min_reliability_ppm: int
    spec_hash: str
    spec_cid: str
    initial_model_hash: str
    initial_model_cid: str
    model_hash: str
    model_cid: str
    validation_commitment: str
    validation_hash: str | None
    validation_cid: str | None
    validation_revealed: bool
    slashed_pool_wei: str
    reward_pool_wei: str | None
    owner_refund_wei: str | None
    total_score: int | None
    refund_claimed: bool
    created_block: int
    created_tx: str


class Round(BaseModel):
    job_id: int
    round: int
    commit_end: int | None
    reveal_end: int | None
    post_deadline: int | None
    commits: int
    reveals: int
    posted: bool
    model_hash: str | None
    model_cid: str | None
    total_score: int | None = Field(None, description="sum of posted scores (1e6 = 1.0)")
    accepted: int | None
    flagged: int | None = Field(None, description="updates with a slashable reason (3..11)")
    missing: int | None = Field(None, description="missing reveal or unavailable content")
    posted_block: int | None
    posted_tx: str | None


class Submission(BaseModel):
    job_id: int
    round: int
    trainer: str
    commitment: str | None
    commit_order: int | None
    content_hash: str | None
    cid: str | None
    score: int | None = Field(None, description="posted score, fixed point (1e6 = 1.0)")
    reason: int | None = Field(None, description="posted reason code (0 accepted)")
    reason_label: str | None
    flagged: bool = Field(description="reason is slashable (3..11)")
    slashed_wei: str | None


class Payout(BaseModel):
    job_id: int
    trainer: str
    join_order: int
    total_score: int
    flagged_rounds: int
    slashed_wei: str
    locked_stake_wei: str
    reward_wei: str | None
    stake_unlocked_wei: str | None
    claimed: bool
    contribution_ppm: int | None
    reliability_ppm_after: int | None


class Slash(BaseModel):
    job_id: int
    round: int
    trainer: str
    amount_wei: str
    reason: int
    reason_label: str
    block_number: int
    tx_hash: str


class Trainer(BaseModel):
    address: str
    registered: bool
    stake_balance_wei: str
    reliability_ppm: int
    reliability_jobs: int
    jobs_joined: int


class TrainerDetail(Trainer):
    history: list[Payout]


class Event(BaseModel):
    block_number: int
    tx_hash: str
    log_index: int
    name: str
    job_id: int | None
    round: int | None
    trainer: str | None
    args: dict[str, Any]


class RoundMetric(BaseModel):
    round: int
    validation_loss: float
    validation_accuracy: float


class Metrics(BaseModel):
    job_id: int
    available: bool
    reason: str
    initial: RoundMetric | None = None
    rounds: list[RoundMetric] = []


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size (1..{MAX_LIMIT})")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="items to skip")]
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="job id (from 1)")]
RoundNo = Annotated[int, Path(ge=1, le=1000, description="round number (from 1)")]
Address = Annotated[str, Path(pattern=ADDRESS_PATTERN, description="0x-prefixed address")]
AddressQ = Annotated[
    str | None, Query(pattern=ADDRESS_PATTERN, description="only this trainer (0x address)")
]
Flagged = Annotated[bool | None, Query(description="only flagged (slashable reason) / not flagged")]
ReasonQ = Annotated[int | None, Query(ge=0, le=11, description="only this reason code")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown job, round or trainer"},
    422: {"model": ErrorBody, "description": "invalid parameters"},
}


def _reason_label(code: int | None) -> str | None:
    if code is None:
        return None
    try:
        return Reason(code).label
    except ValueError:
        return f"unknown-{code}"


def _flagged(code: int | None) -> bool:
    return code is not None and 3 <= code <= 11


def _job_row(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["status"] = STATUS_NAMES.get(d["status"], str(d["status"]))
    d["validation_revealed"] = d.get("validation_cid") is not None
    d["refund_claimed"] = bool(d["refund_claimed"])
    return d


def _submission_row(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["reason_label"] = _reason_label(d["reason"])
    d["flagged"] = _flagged(d["reason"])
    return d


def _payout_row(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["claimed"] = bool(d["claimed"])
    return d


def _checksum(address: str) -> str:
    from web3 import Web3

    return Web3.to_checksum_address(address)


def not_found(what: str) -> HTTPException:
    return HTTPException(status_code=404, detail=what)


def create_api(db_url: str | Engine, *, store: Any = None, title: str = "fedmarket audit API"):
    """The FastAPI app over the indexer database at `db_url` (a URL or an Engine).

    With a content `store`, `/jobs/{id}/metrics` evaluates each posted global model on the
    job's validation split once the owner has revealed it (the chain itself has no accuracy).
    """
    engine = make_engine(db_url) if isinstance(db_url, str) else db_url
    app = FastAPI(
        title=title,
        version="1",
        description="Read-only records of the FedMarket contract, as indexed from its events: "
        "jobs, rounds, submissions with scores and flags, payouts, slashes, trainers. "
        "Amounts in wei are decimal strings; scores are fixed point (1e6 = 1.0).",
    )
    metrics_cache: dict[tuple[int, int], Metrics] = {}
    metrics_lock = threading.Lock()

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

    def page(query: Select, limit: int, offset: int, convert) -> dict[str, Any]:
        with engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [convert(r) for r in rows],
        }

    def get_job(job_id: int) -> dict[str, Any]:
        with engine.connect() as conn:
            row = conn.execute(select(jobs_t).where(jobs_t.c.job_id == job_id)).mappings().first()
        if row is None:
            raise not_found(f"job {job_id} is not in the index")
        return _job_row(row)

    # -- pages ----------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        html = resources.files("backend.audit").joinpath("dashboard/index.html").read_text("utf-8")
        return HTMLResponse(html)

    @app.get("/health", tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness, and how far the index goes."""
        with engine.connect() as conn:
            jobs = conn.execute(select(func.count()).select_from(jobs_t)).scalar_one()
            last = conn.execute(select(func.max(events_t.c.block_number))).scalar_one()
        return {"ok": True, "jobs": jobs, "last_event_block": last}

    # -- jobs -----------------------------------------------------------------------------
    @app.get("/jobs", response_model=Page[Job], tags=["jobs"], responses=_ERRORS)
    def list_jobs(
        limit: Limit = 50,
        offset: Offset = 0,
        status: Annotated[StatusName | None, Query(description="only jobs in this status")] = None,
        owner: Annotated[
            str | None, Query(pattern=ADDRESS_PATTERN, description="only this owner")
        ] = None,
        trainer: AddressQ = None,
    ) -> dict[str, Any]:
        """Jobs, newest first."""
        q = select(jobs_t).order_by(jobs_t.c.job_id.desc())
        if status is not None:
            code = {v: k for k, v in STATUS_NAMES.items()}[status.value]
            q = q.where(jobs_t.c.status == code)
        if owner is not None:
            q = q.where(jobs_t.c.owner == _checksum(owner))
        if trainer is not None:
            joined = select(participants_t.c.job_id).where(
                participants_t.c.trainer == _checksum(trainer)
            )
            q = q.where(jobs_t.c.job_id.in_(joined))
        return page(q, limit, offset, _job_row)

    @app.get("/jobs/{job_id}", response_model=Job, tags=["jobs"], responses=_ERRORS)
    def job(job_id: JobId) -> dict[str, Any]:
        """One job: settings, status, pools and the current model."""
        return get_job(job_id)

    @app.get("/jobs/{job_id}/rounds", response_model=Page[Round], tags=["jobs"], responses=_ERRORS)
    def job_rounds(
        job_id: JobId,
        limit: Limit = 100,
        offset: Offset = 0,
        posted: Annotated[bool | None, Query(description="only posted / open rounds")] = None,
    ) -> dict[str, Any]:
        """A job's rounds in order, with the posted model and per-round totals."""
        get_job(job_id)
        q = select(rounds_t).where(rounds_t.c.job_id == job_id).order_by(rounds_t.c.round)
        if posted is not None:
            q = q.where(rounds_t.c.posted == posted)
        return page(q, limit, offset, lambda r: {**dict(r), "posted": bool(r["posted"])})

    def submissions_query(
        job_id: int,
        round_: int | None,
        trainer: str | None,
        flagged: bool | None,
        reason: int | None,
    ) -> Select:
        q = select(submissions_t).where(submissions_t.c.job_id == job_id)
        if round_ is not None:
            q = q.where(submissions_t.c.round == round_)
        if trainer is not None:
            q = q.where(submissions_t.c.trainer == _checksum(trainer))
        if flagged is True:
            q = q.where(submissions_t.c.reason >= 3)
        elif flagged is False:
            q = q.where(or_(submissions_t.c.reason < 3, submissions_t.c.reason.is_(None)))
        if reason is not None:
            q = q.where(submissions_t.c.reason == reason)
        return q.order_by(submissions_t.c.round, submissions_t.c.commit_order)

    @app.get(
        "/jobs/{job_id}/rounds/{round_no}/submissions",
        response_model=Page[Submission],
        tags=["jobs"],
        responses=_ERRORS,
    )
    def round_submissions(
        job_id: JobId,
        round_no: RoundNo,
        limit: Limit = 100,
        offset: Offset = 0,
        trainer: AddressQ = None,
        flagged: Flagged = None,
        reason: ReasonQ = None,
    ) -> dict[str, Any]:
        """A round's submissions: commitment, reveal, posted score, reason code and label."""
        get_job(job_id)
        with engine.connect() as conn:
            exists = conn.execute(
                select(rounds_t.c.round).where(
                    and_(rounds_t.c.job_id == job_id, rounds_t.c.round == round_no)
                )
            ).first()
        if exists is None:
            raise not_found(f"job {job_id} has no round {round_no} in the index")
        q = submissions_query(job_id, round_no, trainer, flagged, reason)
        return page(q, limit, offset, _submission_row)

    @app.get(
        "/jobs/{job_id}/submissions",
        response_model=Page[Submission],
        tags=["jobs"],
        responses=_ERRORS,
    )
    def job_submissions(
        job_id: JobId,
        limit: Limit = 100,
        offset: Offset = 0,
        round: Annotated[int | None, Query(ge=1, le=1000, description="only this round")] = None,
        trainer: AddressQ = None,
        flagged: Flagged = None,
        reason: ReasonQ = None,
    ) -> dict[str, Any]:
        """Every submission of a job (all rounds), filterable."""
        get_job(job_id)
        q = submissions_query(job_id, round, trainer, flagged, reason)
        return page(q, limit, offset, _submission_row)

    @app.get(
        "/jobs/{job_id}/payouts", response_model=Page[Payout], tags=["jobs"], responses=_ERRORS
    )
    def job_payouts(job_id: JobId, limit: Limit = 256, offset: Offset = 0) -> dict[str, Any]:
        """Per participant: total score, flags, slashed stake, reward and reliability."""
        get_job(job_id)
        q = (
            select(participants_t)
            .where(participants_t.c.job_id == job_id)
            .order_by(participants_t.c.join_order)
        )
        return page(q, limit, offset, _payout_row)

    def slash_row(r: Any) -> dict[str, Any]:
        return {**{k: r[k] for k in r if k != "id"}, "reason_label": _reason_label(r["reason"])}

    @app.get("/jobs/{job_id}/slashes", response_model=Page[Slash], tags=["jobs"], responses=_ERRORS)
    def job_slashes(
        job_id: JobId, limit: Limit = 100, offset: Offset = 0, trainer: AddressQ = None
    ) -> dict[str, Any]:
        """Stake slashed in a job, per round and trainer, with the reason."""
        get_job(job_id)
        q = select(slashes_t).where(slashes_t.c.job_id == job_id)
        if trainer is not None:
            q = q.where(slashes_t.c.trainer == _checksum(trainer))
        return page(q.order_by(slashes_t.c.id), limit, offset, slash_row)

    @app.get("/jobs/{job_id}/metrics", response_model=Metrics, tags=["jobs"], responses=_ERRORS)
    def job_metrics(job_id: JobId) -> Metrics:
        """Validation loss/accuracy of each posted global model — only once the owner revealed
        the validation split, and only if this API was given the content store."""
        job_row = get_job(job_id)
        if store is None:
            return Metrics(job_id=job_id, available=False, reason="the API has no content store")
        if not job_row["validation_revealed"]:
            return Metrics(
                job_id=job_id,
                available=False,
                reason="the validation split is not revealed yet",
            )
        key = (job_id, job_row["posted_rounds"])
        with metrics_lock:
            if key not in metrics_cache:
                metrics_cache[key] = _compute_metrics(engine, store, job_row)
            return metrics_cache[key]

    # -- trainers -------------------------------------------------------------------------
    def trainer_row(r: Any) -> dict[str, Any]:
        d = dict(r)
        d["registered"] = bool(d["registered"])
        d["jobs_joined"] = int(d.get("jobs_joined") or 0)
        return d

    joined_count = (
        select(func.count())
        .where(participants_t.c.trainer == trainers_t.c.address)
        .correlate(trainers_t)
        .scalar_subquery()
        .label("jobs_joined")
    )

    @app.get("/trainers", response_model=Page[Trainer], tags=["trainers"], responses=_ERRORS)
    def list_trainers(
        limit: Limit = 50,
        offset: Offset = 0,
        min_reliability_ppm: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
        job_id: Annotated[
            int | None, Query(ge=1, le=MAX_ID, description="only its trainers")
        ] = None,
    ) -> dict[str, Any]:
        """Trainers with stake and cross-job reliability (ppm), most reliable first."""
        q = select(trainers_t, joined_count).order_by(
            trainers_t.c.reliability_ppm.desc(), trainers_t.c.address
        )
        if min_reliability_ppm is not None:
            q = q.where(trainers_t.c.reliability_ppm >= min_reliability_ppm)
        if job_id is not None:
            q = q.where(
                trainers_t.c.address.in_(
                    select(participants_t.c.trainer).where(participants_t.c.job_id == job_id)
                )
            )
        return page(q, limit, offset, trainer_row)

    def get_trainer(address: str) -> dict[str, Any]:
        addr = _checksum(address)
        with engine.connect() as conn:
            row = (
                conn.execute(select(trainers_t, joined_count).where(trainers_t.c.address == addr))
                .mappings()
                .first()
            )
        if row is None:
            raise not_found(f"trainer {addr} is not in the index")
        return trainer_row(row)

    @app.get(
        "/trainers/{address}",
        response_model=TrainerDetail,
        tags=["trainers"],
        responses=_ERRORS,
    )
    def trainer(address: Address) -> dict[str, Any]:
        """A trainer's stake, reliability and per-job history (scores, flags, rewards)."""
        d = get_trainer(address)
        with engine.connect() as conn:
            rows = (
                conn.execute(
                    select(participants_t)
                    .where(participants_t.c.trainer == d["address"])
                    .order_by(participants_t.c.job_id)
                    .limit(1000)
                )
                .mappings()
                .all()
            )
        d["history"] = [_payout_row(r) for r in rows]
        return d

    @app.get(
        "/trainers/{address}/submissions",
        response_model=Page[Submission],
        tags=["trainers"],
        responses=_ERRORS,
    )
    def trainer_submissions(
        address: Address,
        limit: Limit = 100,
        offset: Offset = 0,
        job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        flagged: Flagged = None,
    ) -> dict[str, Any]:
        """Every submission of a trainer across jobs."""
        d = get_trainer(address)
        q = select(submissions_t).where(submissions_t.c.trainer == d["address"])
        if job_id is not None:
            q = q.where(submissions_t.c.job_id == job_id)
        if flagged is True:
            q = q.where(submissions_t.c.reason >= 3)
        elif flagged is False:
            q = q.where(or_(submissions_t.c.reason < 3, submissions_t.c.reason.is_(None)))
        q = q.order_by(submissions_t.c.job_id, submissions_t.c.round)
        return page(q, limit, offset, _submission_row)

    @app.get(
        "/trainers/{address}/slashes",
        response_model=Page[Slash],
        tags=["trainers"],
        responses=_ERRORS,
    )
    def trainer_slashes(address: Address, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        """Stake a trainer lost, per job and round."""
        d = get_trainer(address)
        q = select(slashes_t).where(slashes_t.c.trainer == d["address"]).order_by(slashes_t.c.id)
        return page(q, limit, offset, slash_row)

    # -- raw events -----------------------------------------------------------------------
    @app.get("/events", response_model=Page[Event], tags=["records"], responses=_ERRORS)
    def events(
        limit: Limit = 100,
        offset: Offset = 0,
        name: Annotated[str | None, Query(max_length=32, description="event name")] = None,
        job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        trainer: AddressQ = None,
    ) -> dict[str, Any]:
        """Every indexed contract event, in chain order: the raw record."""
        q = select(events_t).order_by(events_t.c.block_number, events_t.c.log_index)
        if name is not None:
            q = q.where(events_t.c.name == name)
        if job_id is not None:
            q = q.where(events_t.c.job_id == job_id)
        if trainer is not None:
            q = q.where(events_t.c.trainer == _checksum(trainer))

        def conv(r: Any) -> dict[str, Any]:
            d = {k: r[k] for k in r if k != "id"}
            d["args"] = json.loads(d["args"])
            return d

        return page(q, limit, offset, conv)

    return app


def _compute_metrics(engine: Engine, store: Any, job: dict[str, Any]) -> Metrics:
    """Evaluate the initial and every posted model on the revealed validation split."""
    from backend.core import codec
    from backend.core.datasets import from_npz_bytes
    from backend.core.errors import FedMarketError
    from backend.core.jobspec import JobSpec
    from backend.core.models import evaluate, template_of
    from backend.storage.stores import fetch_verified

    def unhex(h: str) -> bytes:
        return bytes.fromhex(h[2:])

    job_id = job["job_id"]
    try:
        spec = JobSpec.from_bytes(fetch_verified(store, job["spec_cid"], unhex(job["spec_hash"])))
        val = from_npz_bytes(
            fetch_verified(store, job["validation_cid"], unhex(job["validation_hash"]))
        )
        template = template_of(spec.model)

        def metric(round_: int, cid: str, h: str) -> RoundMetric:
            w = codec.decode(fetch_verified(store, cid, unhex(h)), template)
            loss, acc = evaluate(spec.model, w, val.x, val.y)
            return RoundMetric(round=round_, validation_loss=loss, validation_accuracy=acc)

        initial = metric(0, job["initial_model_cid"], job["initial_model_hash"])
        with engine.connect() as conn:
            rows = conn.execute(
                select(rounds_t.c.round, rounds_t.c.model_cid, rounds_t.c.model_hash)
                .where(rounds_t.c.job_id == job_id, rounds_t.c.posted.is_(True))
                .order_by(rounds_t.c.round)
            ).all()
        rounds = [metric(r, cid, h) for r, cid, h in rows]
    except (FedMarketError, ValueError) as exc:
        return Metrics(job_id=job_id, available=False, reason=f"cannot evaluate: {exc}")
    return Metrics(
        job_id=job_id,
        available=True,
        reason="evaluated on the revealed validation split",
        initial=initial,
        rounds=rounds,
    )
