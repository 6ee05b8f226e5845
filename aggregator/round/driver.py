"""The aggregator's I/O around `compute_round`: gather → compute → store → post → reveal the
round's validation chunk, and rebuild.

`RoundDriver` reads the chain, gathers and verifies blobs (`aggregator.round.gather`), scores
round r on validation chunk r only (`backend.core.valchunks.split_chunks`), stores the next
model and posts one transaction; given the owner's validation package (with the chunks' salts)
it then publishes and reveals chunk r, which starts the round's challenge window. Round r+1 can
be posted only once round r is final (`not_final_reason`). After a restart it rebuilds its
in-memory state with the same replay the auditor uses (`aggregator.round.replay`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from eth_account.signers.local import LocalAccount

from aggregator.round.compute import compute_round
from aggregator.round.gather import FetchPolicy, SealedSnapshot, StoreOutage, gather
from aggregator.round.records import RoundOutcome, Submission
from aggregator.round.replay import (
    HISTORY_ROUNDS,
    PublicRound,
    ReplayedRound,
    previous_updates,
    public_round,
    replay,
)
from backend.chain.base import Chain
from backend.chain.market import JobInfo, MarketClient, Phase
from backend.core.codec import Tensors
from backend.core.datasets import Dataset
from backend.core.errors import DataError, FedMarketError
from backend.core.jobspec import JobSpec
from backend.core.valchunks import split_chunks
from backend.core.valpackage import ValidationPackage
from backend.protocol.fetch import fetch_job_spec, fetch_weights
from backend.storage import ContentStore, sha256_bytes

__all__ = [
    "ChunkRevealed",
    "PendingRound",
    "ReplayedRound",
    "RoundAlreadyPosted",
    "RoundDriver",
    "RoundReport",
    "StoreOutage",
    "chunk_due",
    "next_block_time",
    "not_final_reason",
    "reveal_due_chunk",
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


@dataclass(frozen=True)
class ChunkRevealed:
    """A validation chunk this driver published and revealed."""

    round: int
    cid: str
    final_at: int
    gas_used: int
    tx_hash: str


def next_block_time(chain: Chain) -> int:
    """A lower bound of the next block's timestamp (`Chain.next_block_time`)."""
    return chain.next_block_time()


def not_final_reason(job: JobInfo, at: int) -> str | None:
    """Why the job's pending (last posted) round is not final at time `at` (see
    `next_block_time`), so the next round cannot be posted (nor the job finalized) then; None
    when it is final, or no round is pending. Final: the round's validation chunk is revealed,
    no dispute is open and `at > finalAt` (the end of its challenge window)."""
    pending = int(job.pendingRound)
    if pending == 0:
        return None
    if bool(job.disputeOpen):
        return f"round {pending} is disputed; waiting for the court"
    final_at = int(job.finalAt)
    if final_at == 0:
        return f"round {pending}'s validation chunk is not revealed yet"
    if at <= final_at:
        return f"round {pending} is open to challenges until {final_at} (next block at {at})"
    return None


def chunk_due(market: MarketClient, job: JobInfo) -> int | None:
    """The pending round if its validation chunk awaits its reveal and the reveal window is
    open (within the post duration of the post); else None."""
    pending = int(job.pendingRound)
    if pending == 0 or int(job.finalAt) != 0:
        return None
    if market.chain.now() > int(job.postedAt) + int(job.postDuration):
        log.warning(
            "job %d: round %d's validation chunk reveal window has closed", job.job_id, pending
        )
        return None
    return pending


def reveal_due_chunk(
    market: MarketClient,
    store: ContentStore,
    account: LocalAccount,
    job_id: int,
    package: ValidationPackage,
) -> ChunkRevealed | None:
    """Publish the pending round's validation chunk and reveal it on chain, starting the round's
    challenge window; None when no chunk is due (`chunk_due`). Safe to call at any time: a
    restart between a post and its reveal just calls it again."""
    round_ = chunk_due(market, market.job(job_id))
    if round_ is None:
        return None
    chunk = package.reveal(round_)
    cid = store.put(chunk.blob)
    if cid != chunk.cid:
        raise DataError(
            f"job {job_id}: the store named round {round_}'s validation chunk {cid}, not "
            f"{chunk.cid} as the owner committed; it cannot be revealed from this store"
        )
    result = market.reveal_validation_chunk(
        account, job_id, round_, chunk.content_hash, cid, chunk.salt, chunk.proof
    )
    final_at = int(market.job(job_id).finalAt)
    return ChunkRevealed(round_, cid, final_at, result.gas_used, result.tx_hash)


@dataclass
class RoundDriver:
    """Runs one job's rounds for its aggregator: gather → compute_round → store → post.

    `validation`: the job's whole validation split, or the owner's validation package (the
    split plus the chunks' salts and CIDs), without which the driver cannot reveal chunks.

    `history` (accepted updates of earlier rounds, for replay detection) and `momentum` (the
    outer optimizer's state) live in memory; `rebuild()` recomputes them from chain + store
    after a restart, so a resumed aggregator posts exactly what an uninterrupted one would.
    """

    market: MarketClient
    store: ContentStore
    account: LocalAccount
    job_id: int
    validation: Dataset | ValidationPackage
    fetch_timeout_s: float = 30.0  # per blob: how long a missing/unreachable blob is retried
    fetch_retry_s: float = 0.5
    spec: JobSpec = field(init=False)
    history: list[PublicRound] = field(default_factory=list)
    momentum: np.ndarray | None = None
    snapshots: dict[int, SealedSnapshot] = field(default_factory=dict)  # round → sealed updates
    _rounds: int | None = field(default=None, init=False, repr=False)
    _done: int = field(default=0, init=False, repr=False)  # rounds the state covers
    _chunks: list[Dataset] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.spec = fetch_job_spec(self.market, self.store, self.job_id)

    @property
    def rounds(self) -> int:
        """The job's number of rounds (one validation chunk each), read once."""
        if self._rounds is None:
            self._rounds = int(self.market.job(self.job_id).rounds)
        return self._rounds

    @property
    def package(self) -> ValidationPackage | None:
        """The validation package, if this driver holds one for this job (it can reveal)."""
        v = self.validation
        return v if isinstance(v, ValidationPackage) and v.rounds == self.rounds else None

    def chunk(self, round_: int) -> Dataset:
        """The validation chunk round `round_` is scored on."""
        if self._chunks is None:
            package = self.package
            if package is not None:
                self._chunks = package.chunks
            else:
                data = self.validation
                data = data.data if isinstance(data, ValidationPackage) else data
                try:
                    self._chunks = split_chunks(data, self.rounds)
                except ValueError as exc:
                    raise DataError(f"job {self.job_id}: {exc}") from None
        return self._chunks[round_ - 1]

    @property
    def rounds_done(self) -> int:
        """How many rounds this driver's in-memory state covers."""
        return self._done

    def _remember(self, outcome: RoundOutcome) -> None:
        """Keep a round's public updates for replay detection: only the last HISTORY_ROUNDS
        are ever compared, so memory stays flat however long the job runs."""
        self.history = [*self.history, public_round(outcome)][-HISTORY_ROUNDS:]
        self.momentum = outcome.momentum
        self._done += 1

    @property
    def fetch_policy(self) -> FetchPolicy:
        """How long this driver retries a missing or unreachable blob."""
        return FetchPolicy(self.fetch_timeout_s, self.fetch_retry_s)

    def ready(self) -> bool:
        """Whether the current round's reveal phase is over and its post is due."""
        return self.market.phase_of(self.job_id) == Phase.AWAITING_POST

    def collect_sealed(self) -> SealedSnapshot:
        """Add to the current round's snapshot of sealed updates (`SealedSnapshot.collect`):
        call it while the commit phase runs and once it closes, before anyone reveals."""
        round_ = int(self.market.job(self.job_id).currentRound)
        snapshot = self.snapshots.setdefault(round_, SealedSnapshot(self.job_id, round_))
        snapshot.collect(self.market, self.store, self.spec.aggregation.max_update_bytes)
        return snapshot

    def gather(
        self, round_: int, posted_reasons: Mapping[str, int] | None = None
    ) -> list[Submission]:
        """Fetch and verify every revealed update (`aggregator.round.gather.gather`), from the
        round's snapshot of sealed updates when one was taken."""
        return gather(
            self.market,
            self.store,
            self.job_id,
            round_,
            posted_reasons,
            self.fetch_policy,
            self.snapshots.get(round_),
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
        self.history, self.momentum, self._done = [], None, 0
        replayed: list[ReplayedRound] = []
        steps = replay(
            self.market, self.store, self.spec, self.job_id, self.chunk, self.fetch_policy
        )
        for step in steps:
            if not step.matches:
                log.warning(
                    "job %d round %d: replay does not reproduce the posted result "
                    "(model hash, reasons or scores differ); continuing from the recomputation",
                    self.job_id,
                    step.post.round,
                )
            self._remember(step.outcome)
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
            self.chunk(round_),
            previous_updates(self.history),
            self.momentum,
        )
        return PendingRound(round_, submissions, outcome)

    def not_final_reason(self) -> str | None:
        """Why the previous round is not final yet (see `not_final_reason`); None: postable."""
        return not_final_reason(self.market.job(self.job_id), next_block_time(self.market.chain))

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
        self._remember(outcome)
        self.snapshots.pop(pending.round, None)
        return RoundReport(
            self.job_id, pending.round, outcome, cid, model_hash, result.gas_used, result.tx_hash
        )

    def reveal_chunk(self) -> ChunkRevealed | None:
        """Publish and reveal the pending round's validation chunk if due (`reveal_due_chunk`)."""
        package = self.package
        if package is None:
            return None
        return reveal_due_chunk(self.market, self.store, self.account, self.job_id, package)

    def run_round(self) -> RoundReport:
        """Compute and post the current round."""
        return self.post(self.compute())
