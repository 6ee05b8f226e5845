"""Per-job state of the aggregator service, and the views of it that the HTTP API serves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from aggregator.round.driver import RoundDriver
from aggregator.service.journal import Entry
from backend.core.datasets import Dataset
from backend.core.valpackage import ValidationPackage

WAITING_FOR_VALIDATION = "waiting for validation data"


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
    validation_matches_commitment: bool | None = Field(
        description="the validation package matches the job's validation root (None: a plain "
        "split, which can score but not be checked nor reveal chunks)"
    )
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
    chunk_cid: str | None = Field(
        None, description="the round's validation chunk, if this service revealed it"
    )
    chunk_tx_hash: str | None = None


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


@dataclass
class JobState:
    """What the service knows about one job it aggregates."""

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
    journal: dict[int, Entry] = field(default_factory=dict)
    synced: bool = False  # journal checked against the chain's posts
    # (source, data), loaded once: a package matching the job's root, else the plain split
    validation_data: tuple[str, Dataset | ValidationPackage] | None = None

    def record_success(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def record_failure(self, exc: Exception, base_s: float, max_s: float) -> float:
        """Note a failed pass and back off exponentially; returns the delay before a retry."""
        self.failures += 1
        delay = min(max_s, base_s * 2 ** (self.failures - 1))
        self.retry_at = time.monotonic() + delay
        self.last_error = f"{type(exc).__name__}: {exc}"
        return delay

    def view(self) -> JobView:
        return JobView(
            job_id=self.job_id,
            status=self.status,
            chain_status=self.chain_status,
            phase=self.phase,
            current_round=self.current_round,
            rounds=self.rounds,
            participants=self.participants,
            posted_rounds=sorted(self.journal),
            validation=self.validation,
            validation_matches_commitment=self.validation_matches_commitment,
            last_error=self.last_error,
            replay_mismatches=list(self.replay_mismatches),
        )
