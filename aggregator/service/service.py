"""`AggregatorService`: the resumable aggregator behind `fedmarket aggregator serve`.

One service watches the chain for the jobs whose aggregator is its account, runs each job's
round when the reveal phase closes (phase AWAITING_POST) and posts the result. Round r is
scored on validation chunk r; right after posting it, the service publishes and reveals that
chunk (when it holds the owner's validation package, checked against the job's validation
root), which opens the round's challenge window. Round r+1 is posted only once round r is final
(chunk revealed, window over, no dispute): until then the job waits, it does not fail. The
watcher is one background thread iterating the jobs (round computation is CPU-bound and never
runs on the event loop); `poll_once()` is one synchronous pass, for tests and `run-round`.

Resuming: nothing the service needs lives only in memory. On start (or when the chain moved on
without it) a job's `RoundDriver` replays every posted round from chain + store — the
computation is deterministic — to rebuild replay-detection history and optimizer momentum,
checking each recomputed model hash against the posted one. Before computing and again before
posting, the chain's `currentRound` is read, so no round is posted twice or skipped. Every pass
first reveals the pending round's chunk if it is still due (read from the chain, not from
memory), so a restart between a post and its reveal still reveals it. A small JSON journal per
job keeps the round reports (with human-readable details) across restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from eth_account.signers.local import LocalAccount

from aggregator.round.driver import (
    ChunkRevealed,
    RoundAlreadyPosted,
    RoundDriver,
    reveal_due_chunk,
)
from aggregator.service.discovery import JobDiscovery
from aggregator.service.journal import Entry, Journal, chain_entry, replayed_entry, report_entry
from aggregator.service.state import (
    WAITING_FOR_VALIDATION,
    Health,
    JobState,
    JobView,
    RoundView,
)
from aggregator.service.validation import Source, Validation, ValidationData
from backend.chain.market import JobStatus, MarketClient, Phase
from backend.core.errors import ContractRevert, DataError
from backend.core.valpackage import ValidationPackage
from backend.storage import ContentStore

log = logging.getLogger("fedmarket.aggregator")


class AggregatorService:
    """Watches the chain for this aggregator's jobs and posts each round once."""

    def __init__(
        self,
        market: MarketClient,
        store: ContentStore,
        account: LocalAccount,
        *,
        journal_dir: Path,
        validation: Mapping[int, Source] | None = None,
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
        self.validation = ValidationData(validation, validation_dir)
        self.discovery = JobDiscovery(market, str(account.address), from_block)
        self.poll_interval_s = poll_interval_s
        self.fetch_timeout_s = fetch_timeout_s
        self.fetch_retry_s = fetch_retry_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.jobs: dict[int, JobState] = {}
        self.polls = 0
        self.last_poll: float | None = None
        self.last_error: str | None = None
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
        self.discovery.scan(self._add_jobs)
        return sorted(self.jobs)

    def _add_jobs(self, job_ids: list[int]) -> None:
        with self._state_lock:
            for job_id in job_ids:
                if job_id not in self.jobs:
                    log.info("job %d: discovered (aggregator %s)", job_id, self.address)
                    self.jobs[job_id] = JobState(job_id, journal=self.journal.load(job_id))

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
                actions[job_id] = self._guarded_step(state)
            self.polls += 1
            self.last_poll = time.time()
        return actions

    def _guarded_step(self, state: JobState) -> str:
        try:
            action = self._step(state)
        except Exception as exc:  # never let one job (or an outage) stop the loop
            delay = state.record_failure(exc, self.backoff_base_s, self.backoff_max_s)
            log.warning("job %d: %s; retrying in %.1fs", state.job_id, state.last_error, delay)
            return f"error: {state.last_error}"
        state.record_success()
        return action

    def _step(self, state: JobState) -> str:
        job = self.market.job(state.job_id)
        status = JobStatus(int(job.status))
        with self._state_lock:
            state.chain_status = status.label
            state.current_round = int(job.currentRound)
            state.rounds = int(job.rounds)
            state.participants = int(job.participantCount)
        if status in (JobStatus.CREATED,):
            state.status = "waiting for trainers"
            state.phase = Phase.NONE.name.lower()
            return state.status
        if status != JobStatus.RUNNING:
            state.phase = Phase.NONE.name.lower()
            validation = self._maybe_validation(state)
            if not state.synced:
                self._sync_journal(state, validation)
            state.driver = None
            revealed = None
            if status == JobStatus.FINISHED and isinstance(validation, ValidationPackage):
                # the last round's chunk: the job settles once that round is final
                revealed = reveal_due_chunk(
                    self.market, self.store, self.account, state.job_id, validation
                )
            state.status = status.label
            return self._revealed(state, revealed) or state.status
        return self._step_running(state)

    def _step_running(self, state: JobState) -> str:
        phase = self.market.phase_of(state.job_id)
        state.phase = phase.name.lower()
        validation = self.validation.load(state, self.market)
        if validation is None:
            state.status = WAITING_FOR_VALIDATION
            if not state.synced:
                self._sync_journal(state, None)
            return state.status
        driver = self._driver(state, validation)
        revealed = self._revealed(state, driver.reveal_chunk())  # due since a post: reveal now
        if phase == Phase.OVERDUE:
            state.status = "overdue: the post deadline passed; the job can only be abandoned"
            return state.status
        if phase in (Phase.COMMIT, Phase.REVEAL):
            driver.collect_sealed()  # availability is judged while every update is sealed
        if phase != Phase.AWAITING_POST:
            state.status = "active"
            return revealed or f"waiting ({state.phase})"
        not_final = driver.not_final_reason()
        if not_final is not None:
            state.status = f"waiting: {not_final}"
            return revealed or f"waiting ({not_final})"
        return self._run_round(state, driver)

    def _revealed(self, state: JobState, revealed: ChunkRevealed | None) -> str | None:
        """Journal a chunk this service revealed; the pass's action, or None if none was."""
        if revealed is None:
            return None
        log.info(
            "job %d: round %d's validation chunk revealed as %s (tx %s); final after %d",
            state.job_id,
            revealed.round,
            revealed.cid,
            revealed.tx_hash,
            revealed.final_at,
        )
        entries = dict(state.journal)
        if revealed.round in entries:
            entry = dict(entries[revealed.round])
            entry.update(chunk_cid=revealed.cid, chunk_tx_hash=revealed.tx_hash)
            entries[revealed.round] = entry
            self._set_journal(state, entries)
        return f"revealed round {revealed.round}'s validation chunk"

    def _maybe_validation(self, state: JobState) -> Validation | None:
        try:
            return self.validation.load(state, self.market)
        except DataError as exc:
            log.warning("job %d: validation data unusable: %s", state.job_id, exc)
            return None

    def _new_driver(self, state: JobState, validation: Validation) -> RoundDriver:
        return RoundDriver(
            self.market,
            self.store,
            self.account,
            state.job_id,
            validation,
            fetch_timeout_s=self.fetch_timeout_s,
            fetch_retry_s=self.fetch_retry_s,
        )

    def _driver(self, state: JobState, validation: Validation) -> RoundDriver:
        """The job's driver, rebuilt from chain + store whenever it lags behind the chain."""
        if state.driver is None:
            state.driver = self._new_driver(state, validation)
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
            entries[r.post.round] = replayed_entry(state.job_id, r)
        self._set_journal(state, entries)
        state.synced = True
        log.info(
            "job %d: rebuilt state by replaying %d posted round(s)%s",
            state.job_id,
            len(replayed),
            f"; mismatches in rounds {state.replay_mismatches}" if state.replay_mismatches else "",
        )

    def _sync_journal(self, state: JobState, validation: Validation | None) -> None:
        """Fill journal gaps for posted rounds: by replay when possible, else from events."""
        posts = self.market.round_posts(state.job_id)
        if all(p.round in state.journal for p in posts):
            state.synced = True
            return
        if validation is not None:
            self._rebuild(state, self._new_driver(state, validation))
            return
        participants = self.market.participants(state.job_id)
        entries = dict(state.journal)
        for p in posts:
            if p.round not in entries:
                entries[p.round] = chain_entry(p, participants)
        self._set_journal(state, entries)
        state.synced = True

    def _set_journal(self, state: JobState, entries: dict[int, Entry]) -> None:
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
        entries[report.round] = report_entry(report, "posted")
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
        try:  # at once: the round's challenge window starts with this reveal
            self._revealed(state, driver.reveal_chunk())
        except Exception as exc:  # the round is posted; the next pass reveals it again
            state.last_error = f"reveal of round {report.round}'s validation chunk failed: {exc}"
            log.warning("job %d: %s; retrying next pass", job_id, state.last_error)
        return f"posted round {report.round}"

    # -- views ------------------------------------------------------------------------------
    def job_view(self, job_id: int) -> JobView:
        with self._state_lock:
            return self.jobs[job_id].view()

    def jobs_view(self) -> list[JobView]:
        return [self.job_view(j) for j in sorted(self.jobs)]

    def rounds_view(self, job_id: int) -> list[RoundView]:
        with self._state_lock:
            journal = self.jobs[job_id].journal
            entries = [dict(journal[k]) for k in sorted(journal)]
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
