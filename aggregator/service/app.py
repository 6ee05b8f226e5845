"""`fedmarket aggregator serve`: a resumable aggregator service over HTTP.

One `AggregatorService` watches the chain for the jobs whose aggregator is its account, runs
each job's round when the reveal phase closes (phase AWAITING_POST) and posts the result. The
watcher is one background thread iterating the jobs (round computation is CPU-bound and never
runs on the event loop); `poll_once()` is one synchronous pass, for tests and `run-round`.

Resuming: nothing the service needs lives only in memory. On start (or when the chain moved on
without it) a job's `RoundDriver` replays every posted round from chain + store — the
computation is deterministic — to rebuild replay-detection history and optimizer momentum,
checking each recomputed model hash against the posted one. Before computing and again before
posting, the chain's `currentRound` is read, so no round is posted twice or skipped. A small
JSON journal per job keeps the round reports (with human-readable details) across restarts.

`create_app(service)` exposes /health, /jobs, /jobs/{id} and /jobs/{id}/rounds (OpenAPI at
/docs and /openapi.json). Errors are FastAPI's `{"detail": ...}`: 404 for a job this aggregator
does not serve, 422 for a malformed or non-positive id, 405 with `Allow` for another method.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.exception_handlers import http_exception_handler
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from web3 import Web3

from aggregator.round.compute import RoundAlreadyPosted, RoundDriver, RoundReport
from backend.chain.market import JobStatus, MarketClient, Phase, validation_commitment
from backend.core.datasets import Dataset, load_data_file
from backend.core.errors import ContractRevert, DataError, Reason
from backend.protocol.http_errors import http_error_headers
from backend.storage.stores import ContentStore, raw_cid, sha256_bytes

log = logging.getLogger("fedmarket.aggregator")

WAITING_FOR_VALIDATION = "waiting for validation data"


# -- the journal: round reports on local disk ----------------------------------------------
class Journal:
    """One JSON file per job with the round reports this aggregator computed or replayed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: int) -> Path:
        return self.root / f"job-{job_id}.json"

    def load(self, job_id: int) -> dict[int, dict[str, Any]]:
        path = self._path(job_id)
        if not path.exists():
            return {}
        try:
            raw = json.loads(path.read_text())
            return {int(k): v for k, v in raw.get("rounds", {}).items()}
        except (OSError, ValueError) as exc:
            log.warning("journal %s is unreadable (%s); rebuilding it from the chain", path, exc)
            return {}

    def save(self, job_id: int, rounds: Mapping[int, dict[str, Any]]) -> None:
        body = {"job_id": job_id, "rounds": {str(k): rounds[k] for k in sorted(rounds)}}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh, indent=1)
        os.replace(tmp, self._path(job_id))


def _report_entry(report: RoundReport, source: str) -> dict[str, Any]:
    o = report.outcome
    return {
        "round": report.round,
        "source": source,
        "trainers": [t.trainer for t in o.outcomes],
        "reasons": o.reasons,
        "reason_labels": [t.reason.label for t in o.outcomes],
        "details": [t.detail for t in o.outcomes],
        "scores": o.scores_fp,
        "score_values": [t.score for t in o.outcomes],
        "loss_before": o.loss_before,
        "loss_after": o.loss_after,
        "accuracy": o.accuracy_after,
        "model_hash": "0x" + report.model_hash.hex(),
        "model_cid": report.model_cid,
        "gas_used": report.gas_used,
        "tx_hash": report.tx_hash,
        "posted_at": time.time(),
    }


# -- per-job state ------------------------------------------------------------------------
@dataclass
class JobState:
    job_id: int
    status: str = "discovered"
    chain_status: str = ""
    phase: str = ""
    current_round: int = 0
    rounds: int = 0
    participants: int = 0
    validation: str | None = None  # where its validation data came from
    validation_matches_commitment: bool | None = None
    last_error: str | None = None
    failures: int = 0
    retry_at: float = 0.0
    replay_mismatches: list[int] = field(default_factory=list)
    driver: RoundDriver | None = None
    journal: dict[int, dict[str, Any]] = field(default_factory=dict)
    synced: bool = False  # journal checked against the chain's posts
    validation_data: tuple[str, Dataset] | None = None  # (source, data), loaded once


class JobView(BaseModel):
    job_id: int
    status: str = Field(description="service status: active, waiting for validation data, ...")
    chain_status: str = Field(description="the contract's job status")
    phase: str = Field(description="round phase (commit, reveal, awaiting_post, overdue, none)")
    current_round: int
    rounds: int
    participants: int
    posted_rounds: list[int]
    validation: str | None
    validation_matches_commitment: bool | None
    last_error: str | None
    replay_mismatches: list[int] = Field(description="rounds whose replay did not reproduce")


class RoundView(BaseModel):
    round: int
    source: str = Field(description="posted (by this service), replayed, or chain (codes only)")
    trainers: list[str]
    reasons: list[int]
    reason_labels: list[str]
    details: list[str]
    scores: list[int] = Field(description="fixed-point scores as posted (1e6 = 1.0)")
    score_values: list[float] | None = None
    loss_before: float | None = None
    loss_after: float | None = None
    accuracy: float | None = None
    model_hash: str
    model_cid: str
    gas_used: int | None = None
    tx_hash: str | None = None


class ErrorDetail(BaseModel):
    detail: str = Field(description="what went wrong, for people")


# Job ids are the contract's: they start at 1, so 0 and negatives are malformed (422), not 404.
JobId = Annotated[int, PathParam(ge=1, description="job id (from 1, as on chain)")]
_NOT_SERVED: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "no job with this id is aggregated here"},
}


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when the last pass failed")
    aggregator: str
    market: str
    chain: str
    jobs: int
    watcher_running: bool
    polls: int
    last_poll: float | None
    last_error: str | None


# -- the service --------------------------------------------------------------------------
class AggregatorService:
    """Watches the chain for this aggregator's jobs and posts each round once."""

    def __init__(
        self,
        market: MarketClient,
        store: ContentStore,
        account: LocalAccount,
        *,
        journal_dir: Path,
        validation: Mapping[int, Path | Dataset] | None = None,
        validation_dir: Path | None = None,
        poll_interval_s: float = 5.0,
        fetch_timeout_s: float = 30.0,
        fetch_retry_s: float = 0.5,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 60.0,
        from_block: int = 0,
    ) -> None:
        self.market = market
        self.store = store
        self.account = account
        self.journal = Journal(journal_dir)
        self.validation = dict(validation or {})
        self.validation_dir = validation_dir
        self.poll_interval_s = poll_interval_s
        self.fetch_timeout_s = fetch_timeout_s
        self.fetch_retry_s = fetch_retry_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.jobs: dict[int, JobState] = {}
        self.polls = 0
        self.last_poll: float | None = None
        self.last_error: str | None = None
        self._scan_from = from_block
        self._poll_lock = threading.Lock()  # one pass at a time (thread and manual calls)
        self._state_lock = threading.Lock()  # views vs. updates
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    # -- discovery --------------------------------------------------------------------------
    def discover(self) -> list[int]:
        """Job ids created with this account as aggregator (JobCreated, filtered by topic)."""
        head = int(self.market.chain.w3.eth.block_number)
        if head >= self._scan_from:
            ev = self.market.contract.events.JobCreated()
            logs = ev.get_logs(
                from_block=self._scan_from,
                to_block=head,
                argument_filters={"aggregator": Web3.to_checksum_address(self.address)},
            )
            with self._state_lock:
                for entry in logs:
                    job_id = int(entry["args"]["jobId"])
                    if job_id not in self.jobs:
                        log.info("job %d: discovered (aggregator %s)", job_id, self.address)
                        self.jobs[job_id] = JobState(job_id, journal=self.journal.load(job_id))
            self._scan_from = head + 1
        return sorted(self.jobs)

    # -- validation data --------------------------------------------------------------------
    def _validation_source(self, job_id: int) -> Path | Dataset | None:
        if job_id in self.validation:
            return self.validation[job_id]
        if self.validation_dir is not None:
            path = Path(self.validation_dir) / f"{job_id}.npz"
            if path.exists():
                return path
        return None

    def _load_validation(self, state: JobState) -> Dataset | None:
        src = self._validation_source(state.job_id)
        if src is None:
            return None
        if isinstance(src, Dataset):
            state.validation = "given in-process"
            return src
        if state.validation_data is not None and state.validation_data[0] == str(src):
            return state.validation_data[1]
        data = load_data_file(Path(src))
        state.validation_data = (str(src), data)
        state.validation = str(src)
        # The owner committed to keccak(sha256(npz), cid) at job creation; a raw-leaves CIDv1
        # of the same bytes reproduces it. A mismatch is reported, not fatal (re-saved files).
        blob = Path(src).read_bytes()
        commitment = validation_commitment(sha256_bytes(blob), raw_cid(blob))
        expected = bytes(self.market.job(state.job_id).validationCommitment)
        state.validation_matches_commitment = commitment == expected
        if not state.validation_matches_commitment:
            log.warning(
                "job %d: validation file %s does not match the job's validation commitment",
                state.job_id,
                src,
            )
        return data

    # -- one pass ---------------------------------------------------------------------------
    def poll_once(self, *, ignore_backoff: bool = False) -> dict[int, str]:
        """One synchronous watcher pass over every job; returns what happened per job."""
        actions: dict[int, str] = {}
        with self._poll_lock:
            try:
                job_ids = self.discover()
                self.last_error = None
            except Exception as exc:
                self.last_error = f"discovery failed: {exc}"
                log.warning("discovery failed (will retry): %s", exc)
                job_ids = sorted(self.jobs)
            now = time.monotonic()
            for job_id in job_ids:
                state = self.jobs[job_id]
                if not ignore_backoff and state.retry_at > now:
                    actions[job_id] = "backing off"
                    continue
                try:
                    actions[job_id] = self._step(state)
                    state.failures = 0
                    state.retry_at = 0.0
                except Exception as exc:  # never let one job (or an outage) stop the loop
                    state.failures += 1
                    delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (state.failures - 1))
                    state.retry_at = time.monotonic() + delay
                    state.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("job %d: %s; retrying in %.1fs", job_id, state.last_error, delay)
                    actions[job_id] = f"error: {state.last_error}"
            self.polls += 1
            self.last_poll = time.time()
        return actions

    def _step(self, state: JobState) -> str:
        job_id = state.job_id
        job = self.market.job(job_id)
        status = JobStatus(int(job.status))
        with self._state_lock:
            state.chain_status = status.name.lower()
            state.current_round = int(job.currentRound)
            state.rounds = int(job.rounds)
            state.participants = int(job.participantCount)
        if status in (JobStatus.CREATED,):
            state.status = "waiting for trainers"
            state.phase = Phase.NONE.name.lower()
            return state.status
        if status != JobStatus.RUNNING:
            state.phase = Phase.NONE.name.lower()
            if not state.synced:
                self._sync_journal(state, self._maybe_validation(state))
            state.status = status.name.lower()
            state.driver = None
            return state.status
        phase = self.market.phase_of(job_id)
        state.phase = phase.name.lower()
        validation = self._load_validation(state)
        if validation is None:
            state.status = WAITING_FOR_VALIDATION
            if not state.synced:
                self._sync_journal(state, None)
            return state.status
        driver = self._driver(state, validation)
        if phase == Phase.OVERDUE:
            state.status = "overdue: the post deadline passed; the job can only be abandoned"
            return state.status
        if phase != Phase.AWAITING_POST:
            state.status = "active"
            return f"waiting ({state.phase})"
        return self._run_round(state, driver)

    def _maybe_validation(self, state: JobState) -> Dataset | None:
        try:
            return self._load_validation(state)
        except DataError as exc:
            log.warning("job %d: validation data unusable: %s", state.job_id, exc)
            return None

    def _driver(self, state: JobState, validation: Dataset) -> RoundDriver:
        """The job's driver, rebuilt from chain + store whenever it lags behind the chain."""
        if state.driver is None:
            state.driver = RoundDriver(
                self.market,
                self.store,
                self.account,
                state.job_id,
                validation,
                fetch_timeout_s=self.fetch_timeout_s,
                fetch_retry_s=self.fetch_retry_s,
            )
        driver = state.driver
        if driver.rounds_done != state.current_round - 1 or not state.synced:
            self._rebuild(state, driver)
        return driver

    def _rebuild(self, state: JobState, driver: RoundDriver) -> None:
        replayed = driver.rebuild()
        state.replay_mismatches = [r.post.round for r in replayed if not r.matches]
        entries = dict(state.journal)
        for r in replayed:
            if entries.get(r.post.round, {}).get("source") not in (None, "chain"):
                continue  # keep what this service journaled when it posted
            report = RoundReport(
                state.job_id, r.post.round, r.outcome, r.post.model_cid, r.post.model_hash, 0, ""
            )
            entry = _report_entry(report, "replayed" if r.matches else "replayed (mismatch)")
            entry.update(
                tx_hash=r.post.tx_hash,
                gas_used=None,
                reasons=r.post.reasons,  # what the chain holds is authoritative
                scores=r.post.scores,
            )
            entries[r.post.round] = entry
        self._set_journal(state, entries)
        state.synced = True
        log.info(
            "job %d: rebuilt state by replaying %d posted round(s)%s",
            state.job_id,
            len(replayed),
            f"; mismatches in rounds {state.replay_mismatches}" if state.replay_mismatches else "",
        )

    def _sync_journal(self, state: JobState, validation: Dataset | None) -> None:
        """Fill journal gaps for posted rounds: by replay when possible, else from events."""
        posts = self.market.round_posts(state.job_id)
        if all(p.round in state.journal for p in posts):
            state.synced = True
            return
        if validation is not None:
            driver = RoundDriver(
                self.market,
                self.store,
                self.account,
                state.job_id,
                validation,
                fetch_timeout_s=self.fetch_timeout_s,
                fetch_retry_s=self.fetch_retry_s,
            )
            self._rebuild(state, driver)
            return
        participants = self.market.participants(state.job_id)
        entries = dict(state.journal)
        for p in posts:
            if p.round in entries:
                continue
            entries[p.round] = {
                "round": p.round,
                "source": "chain",
                "trainers": participants,
                "reasons": p.reasons,
                "reason_labels": [Reason(r).label for r in p.reasons],
                "details": ["" for _ in p.reasons],
                "scores": p.scores,
                "model_hash": "0x" + p.model_hash.hex(),
                "model_cid": p.model_cid,
                "tx_hash": p.tx_hash,
            }
        self._set_journal(state, entries)
        state.synced = True

    def _set_journal(self, state: JobState, entries: dict[int, dict[str, Any]]) -> None:
        with self._state_lock:
            state.journal = entries
        self.journal.save(state.job_id, entries)

    def _run_round(self, state: JobState, driver: RoundDriver) -> str:
        job_id = state.job_id
        pending = driver.compute()
        log.info("job %d: round %d computed; posting", job_id, pending.round)
        try:
            report = driver.post(pending)
        except (ContractRevert, RoundAlreadyPosted) as exc:
            # e.g. WrongRound: a previous incarnation already posted it; PostDeadlinePassed.
            state.last_error = f"post of round {pending.round} failed: {exc}"
            log.warning("job %d: %s; re-reading the job's state", job_id, state.last_error)
            state.synced = False  # next pass rebuilds from what the chain now says
            return f"post failed: {exc}"
        entries = dict(state.journal)
        entries[report.round] = _report_entry(report, "posted")
        self._set_journal(state, entries)
        state.last_error = None
        state.status = "active"
        log.info(
            "job %d: round %d posted (tx %s, reasons %s)",
            job_id,
            report.round,
            report.tx_hash,
            report.outcome.reasons,
        )
        return f"posted round {report.round}"

    # -- views ------------------------------------------------------------------------------
    def job_view(self, job_id: int) -> JobView:
        with self._state_lock:
            s = self.jobs[job_id]
            return JobView(
                job_id=s.job_id,
                status=s.status,
                chain_status=s.chain_status,
                phase=s.phase,
                current_round=s.current_round,
                rounds=s.rounds,
                participants=s.participants,
                posted_rounds=sorted(s.journal),
                validation=s.validation,
                validation_matches_commitment=s.validation_matches_commitment,
                last_error=s.last_error,
                replay_mismatches=list(s.replay_mismatches),
            )

    def jobs_view(self) -> list[JobView]:
        return [self.job_view(j) for j in sorted(self.jobs)]

    def rounds_view(self, job_id: int) -> list[RoundView]:
        with self._state_lock:
            entries = [
                dict(self.jobs[job_id].journal[k]) for k in sorted(self.jobs[job_id].journal)
            ]
        return [RoundView.model_validate(e) for e in entries]

    def health(self) -> Health:
        return Health(
            status="ok" if self.last_error is None else "degraded",
            aggregator=self.address,
            market=self.market.address,
            chain=self.market.chain.kind,
            jobs=len(self.jobs),
            watcher_running=self.running,
            polls=self.polls,
            last_poll=self.last_poll,
            last_error=self.last_error,
        )

    # -- the background watcher -------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="aggregator-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # pragma: no cover - poll_once already catches per job
                self.last_error = f"watcher pass failed: {exc}"
                log.exception("watcher pass failed")
            self._stop.wait(self.poll_interval_s)


def create_app(service: AggregatorService, *, start_watcher: bool = True) -> FastAPI:
    """The HTTP API over a service; the watcher thread runs for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Iterator[None]:  # type: ignore[misc]
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

    return app
