"""The aggregator's I/O around `compute_round`: gather → compute → store → post, and rebuild.

`RoundDriver` reads the chain, gathers and verifies blobs (`aggregator.round.gather`), stores
the next model and posts one transaction; after a restart it rebuilds its in-memory state with
the same replay the auditor uses (`aggregator.round.replay`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from eth_account.signers.local import LocalAccount

from aggregator.round.compute import compute_round
from aggregator.round.gather import FetchPolicy, StoreOutage, gather
from aggregator.round.records import RoundOutcome, Submission
from aggregator.round.replay import ReplayedRound, previous_updates, replay
from backend.chain.market import MarketClient, Phase
from backend.core.codec import Tensors
from backend.core.datasets import Dataset
from backend.core.errors import FedMarketError
from backend.core.jobspec import JobSpec
from backend.protocol.fetch import fetch_job_spec, fetch_weights
from backend.storage import ContentStore, sha256_bytes

__all__ = [
    "PendingRound",
    "ReplayedRound",
    "RoundAlreadyPosted",
    "RoundDriver",
    "RoundReport",
    "StoreOutage",
]

log = logging.getLogger("fedmarket.aggregator")


@dataclass
class RoundReport:
    """A posted round: its outcome, where the next model is, and the transaction."""

    job_id: int
    round: int
    outcome: RoundOutcome
    model_cid: str
    model_hash: bytes
    gas_used: int
    tx_hash: str


@dataclass
class PendingRound:
    """A computed round not yet posted (deterministic: recomputing gives the same result)."""

    round: int
    submissions: list[Submission]
    outcome: RoundOutcome


class RoundAlreadyPosted(FedMarketError):
    """The chain moved past the round this driver computed (another incarnation posted it)."""


@dataclass
class RoundDriver:
    """Runs one job's rounds for its aggregator: gather → compute_round → store → post.

    `history` (accepted updates of earlier rounds, for replay detection) and `momentum` (the
    outer optimizer's state) live in memory; `rebuild()` recomputes them from chain + store
    after a restart, so a resumed aggregator posts exactly what an uninterrupted one would.
    """

    market: MarketClient
    store: ContentStore
    account: LocalAccount
    job_id: int
    validation: Dataset
    fetch_timeout_s: float = 30.0  # per blob: how long a missing/unreachable blob is retried
    fetch_retry_s: float = 0.5
    spec: JobSpec = field(init=False)
    history: list[np.ndarray] = field(default_factory=list)
    momentum: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.spec = fetch_job_spec(self.market, self.store, self.job_id)

    @property
    def rounds_done(self) -> int:
        """How many rounds this driver's in-memory state covers."""
        return len(self.history)

    @property
    def fetch_policy(self) -> FetchPolicy:
        """How long this driver retries a missing or unreachable blob."""
        return FetchPolicy(self.fetch_timeout_s, self.fetch_retry_s)

    def ready(self) -> bool:
        """Whether the current round's reveal phase is over and its post is due."""
        return self.market.phase_of(self.job_id) == Phase.AWAITING_POST

    def gather(
        self, round_: int, posted_reasons: Mapping[str, int] | None = None
    ) -> list[Submission]:
        """Fetch and verify every revealed update (`aggregator.round.gather.gather`)."""
        return gather(
            self.market, self.store, self.job_id, round_, posted_reasons, self.fetch_policy
        )

    def global_weights(self) -> Tensors:
        """The job's current global model, fetched and verified."""
        model_hash, model_cid = self.market.current_model(self.job_id)
        return fetch_weights(self.store, self.spec, model_hash, model_cid)

    def rebuild(self) -> list[ReplayedRound]:
        """Recompute `history` and `momentum` by replaying every posted round (deterministic).

        Each replay's model hash, reasons and scores are checked against the post; a mismatch is
        logged
        (the state is still rebuilt from the recomputation, the best available).
        """
        self.history, self.momentum = [], None
        replayed: list[ReplayedRound] = []
        steps = replay(
            self.market, self.store, self.spec, self.job_id, self.validation, self.fetch_policy
        )
        for step in steps:
            if not step.matches:
                log.warning(
                    "job %d round %d: replay does not reproduce the posted result "
                    "(model hash, reasons or scores differ); continuing from the recomputation",
                    self.job_id,
                    step.post.round,
                )
            self.history.append(step.outcome.accepted_updates)
            self.momentum = step.outcome.momentum
            replayed.append(step)
        return replayed

    def compute(self) -> PendingRound:
        """Compute the current round (no transaction). Deterministic, so safe to redo."""
        round_ = int(self.market.job(self.job_id).currentRound)
        if self.rounds_done != round_ - 1:
            raise RoundAlreadyPosted(
                f"job {self.job_id}: driver state covers {self.rounds_done} rounds but the chain "
                f"is at round {round_}; rebuild first"
            )
        weights = self.global_weights()  # fails early (StorageUnavailable) if the store is down
        submissions = self.gather(round_)
        outcome = compute_round(
            self.spec,
            weights,
            submissions,
            self.validation,
            previous_updates(self.history),
            self.momentum,
        )
        return PendingRound(round_, submissions, outcome)

    def post(self, pending: PendingRound) -> RoundReport:
        """Store the next model and post the round, unless the chain already moved on."""
        current = int(self.market.job(self.job_id).currentRound)
        if current != pending.round:
            raise RoundAlreadyPosted(
                f"job {self.job_id}: round {pending.round} is no longer current (chain at "
                f"round {current}); not posting it again"
            )
        outcome = pending.outcome
        cid = self.store.put(outcome.next_model_blob)
        model_hash = sha256_bytes(outcome.next_model_blob)
        result = self.market.post_round(
            self.account,
            self.job_id,
            pending.round,
            model_hash,
            cid,
            outcome.scores_fp,
            outcome.reasons,
        )
        self.history.append(outcome.accepted_updates)
        self.momentum = outcome.momentum
        return RoundReport(
            self.job_id, pending.round, outcome, cid, model_hash, result.gas_used, result.tx_hash
        )

    def run_round(self) -> RoundReport:
        """Compute and post the current round."""
        return self.post(self.compute())
