"""Re-verify a job from public artifacts: every round, every score, every payout.

Round r is scored on the job's validation chunk r only, and the owner reveals chunk r right
after round r is posted (`ValidationChunkRevealed`). `verify_round` re-runs one posted round as
soon as its chunk is public, with the replay the aggregator itself uses after a restart
(`aggregator.round.replay`: the revealed updates gathered by `aggregator.round.gather`, each
round's chunk, every earlier global model and the job's recorded settings, the JobSpec whose
sha256 is on chain), and compares the recomputed reasons, scores and model hash — and their
digest (`round_digest`, what a challenge and a committee vote are about) — with the round's
result of record: the post, or the correction a dispute put in its place (`RoundCorrected`).
The verifier role challenges and votes with that digest, and posts the recomputed result as a
correction.

`verify_job` does this for every posted round whose chunk is revealed (a round whose chunk is
not revealed yet "cannot be verified yet": that is not a failure), then recomputes the
settlement (SPEC.md "Settlement", `backend.audit.settlement`) from the results of record and
compares it with what the contract slashed, reversed, pooled, paid and refunded.

Strict: when the auditor's own store is unreachable, or an input it needs is not published, the
round "cannot be verified" (`CannotVerify`); that is never reported as the aggregator's fault.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aggregator.round.gather import FetchPolicy
from aggregator.round.replay import InputModelUnavailable, ReplayedRound, replay
from backend.audit.settlement import (
    Settlement,
    expected_payouts,
    expected_slashes,
    net_slashes,
    score_totals,
)
from backend.chain.market import JobStatus, MarketClient, RoundPost, round_digest
from backend.core.datasets import Dataset, from_npz_bytes
from backend.core.errors import DataError, FedMarketError, StorageError, StorageUnavailable
from backend.core.jobspec import JobSpec
from backend.protocol.fetch import fetch_job_spec
from backend.storage import ContentStore, fetch_verified

__all__ = [
    "CannotVerify",
    "Mismatch",
    "RecomputedRound",
    "RoundCheck",
    "UnverifiedRound",
    "VerifyError",
    "VerifyReport",
    "chunk_loader",
    "verify_job",
    "verify_round",
]

#: The auditor's fetch policy: its own store being down raises, it never becomes a reason code.
STRICT = FetchPolicy(strict=True)


class VerifyError(FedMarketError):
    """The job cannot be re-verified at all (unknown job, spec unavailable, ...)."""


class CannotVerify(VerifyError):
    """A round cannot be verified (yet): its chunk is not revealed, an input is not published,
    or the auditor's own store is unreachable. Never evidence against the aggregator."""

    def __init__(self, job_id: int, round_: int, why: str) -> None:
        super().__init__(f"job {job_id} round {round_}: cannot verify: {why}")
        self.job_id = job_id
        self.round = round_
        self.why = why


@dataclass(frozen=True)
class Mismatch:
    round: int | None  # None: a settlement-level mismatch
    trainer: str | None  # None: a round-level field (model hash)
    field: str
    posted: Any
    recomputed: Any

    def describe(self) -> str:
        where = f"round {self.round}" if self.round is not None else "settlement"
        who = f" trainer {self.trainer}" if self.trainer else ""
        return f"{where}{who}: {self.field} posted {self.posted} but recomputed {self.recomputed}"


@dataclass(frozen=True)
class RecomputedRound:
    """A round's result as recomputed from public artifacts: what a verifier challenges with
    (`digest`) and posts as the correction (`as_post`, once `model_blob` is stored)."""

    job_id: int
    round: int
    model_hash: bytes
    model_blob: bytes
    scores: list[int]
    reasons: list[int]

    @property
    def digest(self) -> bytes:
        """`round_digest` of this result (FedMarket.digestOf)."""
        return round_digest(self.job_id, self.round, self.model_hash, self.scores, self.reasons)

    def as_post(self, model_cid: str) -> RoundPost:
        """This result as a `RoundPost` (the `fix` of `MarketClient.post_correction`)."""
        return RoundPost(
            self.round, self.model_hash, model_cid, list(self.scores), list(self.reasons), 0, ""
        )


@dataclass
class RoundCheck:
    """One posted round re-run and compared with its result of record."""

    round: int
    ok: bool
    mismatches: list[Mismatch] = field(default_factory=list)
    scores_posted: list[int] = field(default_factory=list)
    scores_recomputed: list[int] = field(default_factory=list)
    reasons_posted: list[int] = field(default_factory=list)
    reasons_recomputed: list[int] = field(default_factory=list)
    model_hash_posted: str = ""
    model_hash_recomputed: str = ""
    validation_loss: float | None = None  # of the recomputed model, on the round's chunk
    validation_accuracy: float | None = None
    corrected: bool = False  # the result of record is a dispute's correction, not the post
    digest_posted: str = ""  # round_digest of the result of record
    digest_recomputed: str = ""
    # each participant's claimed (cumulative) ε, from its revealed update (None: no claim);
    # read from public blobs, not posted on chain, so not part of the digest
    epsilon: list[float | None] = field(default_factory=list)
    # not serialised: the recomputed result (with the model blob) and the result of record
    recomputed: RecomputedRound | None = field(default=None, repr=False, compare=False)
    post: RoundPost | None = field(default=None, repr=False, compare=False)

    @property
    def digest(self) -> bytes:
        """The digest of the recomputed result (what to challenge or vote with)."""
        return self._recomputed().digest

    @property
    def matches(self) -> bool:
        """Whether the recomputed result's digest is the result of record's."""
        return self.digest_recomputed == self.digest_posted != ""

    @property
    def model_hash(self) -> bytes:
        return self._recomputed().model_hash

    @property
    def model_blob(self) -> bytes:
        return self._recomputed().model_blob

    @property
    def scores(self) -> list[int]:
        return list(self._recomputed().scores)

    @property
    def reasons(self) -> list[int]:
        return list(self._recomputed().reasons)

    def _recomputed(self) -> RecomputedRound:
        if self.recomputed is None:
            raise VerifyError(f"round {self.round} was not recomputed")
        return self.recomputed


@dataclass(frozen=True)
class UnverifiedRound:
    """A posted round that could not be re-run (yet), and why. Not a mismatch."""

    round: int
    why: str

    def describe(self) -> str:
        return f"round {self.round}: cannot verify yet: {self.why}"


@dataclass
class VerifyReport:
    job_id: int
    status: str
    chunks_revealed: list[int] = field(default_factory=list)
    trainers: list[str] = field(default_factory=list)
    rounds: list[RoundCheck] = field(default_factory=list)
    unverified: list[UnverifiedRound] = field(default_factory=list)
    settlement: list[Mismatch] = field(default_factory=list)
    payouts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None

    @property
    def mismatches(self) -> list[Mismatch]:
        return [m for r in self.rounds for m in r.mismatches] + list(self.settlement)

    @property
    def ok(self) -> bool:
        """No error and no mismatch (rounds that cannot be verified yet are not failures)."""
        return self.error is None and not self.mismatches

    @property
    def rounds_verified(self) -> int:
        return len(self.rounds)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self, dict_factory=_serialisable)
        d["ok"] = self.ok
        d["rounds_verified"] = self.rounds_verified
        d["mismatch_count"] = len(self.mismatches)
        return d


def _serialisable(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """`asdict`'s dict factory, leaving out a RoundCheck's non-serialised fields."""
    return {k: v for k, v in items if k not in ("recomputed", "post")}


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


# -- inputs -------------------------------------------------------------------------------------
def chunk_loader(
    market: MarketClient, store: ContentStore, job_id: int
) -> Callable[[int], Dataset]:
    """round -> that round's revealed validation chunk, fetched and checked against its on-chain
    sha256 (once per round); CannotVerify if it is not revealed or cannot be read."""
    chunks = market.validation_chunks(job_id)
    cache: dict[int, Dataset] = {}

    def load(round_: int) -> Dataset:
        if round_ in cache:
            return cache[round_]
        if round_ not in chunks:
            raise CannotVerify(job_id, round_, "its validation chunk is not revealed yet")
        content_hash, cid = chunks[round_]
        try:
            data = from_npz_bytes(fetch_verified(store, cid, content_hash))
        except StorageUnavailable as exc:
            raise CannotVerify(job_id, round_, f"the content store is unreachable: {exc}") from exc
        except FedMarketError as exc:
            raise CannotVerify(
                job_id, round_, f"its revealed validation chunk {cid} cannot be read: {exc}"
            ) from exc
        cache[round_] = data
        return data

    return load


def _spec(market: MarketClient, store: ContentStore, job_id: int) -> JobSpec:
    try:
        return fetch_job_spec(market, store, job_id)
    except FedMarketError as exc:
        raise VerifyError(f"the job spec cannot be fetched: {exc}") from exc


def _require_job(market: MarketClient, job_id: int) -> None:
    if not market.job_created(job_id):
        raise VerifyError(f"job {job_id} does not exist on this chain (no JobCreated event)")


# -- one round ----------------------------------------------------------------------------------
def verify_round(
    market: MarketClient,
    store: ContentStore,
    job_id: int,
    round_: int,
    *,
    policy: FetchPolicy = STRICT,
) -> RoundCheck:
    """Re-run posted round `round_` of `job_id` as soon as its validation chunk is public.

    Replays rounds 1..round_ (the earlier ones rebuild the carried history and momentum) and
    compares the last with its result of record. The check's `digest` / `matches` /
    `recomputed` are what a verifier challenges, votes and corrects with.

    Raises VerifyError for an unknown job or an unreadable spec, and CannotVerify when the
    round is not posted, its chunk is not revealed, an input (model, chunk) cannot be fetched or
    the store is unreachable — never a mismatch the aggregator did not make.
    """
    _require_job(market, job_id)
    results = market.results(job_id)
    posts = [p for p in results if p.round <= round_]
    if not posts or posts[-1].round != round_:
        raise CannotVerify(job_id, round_, "the round is not posted")
    validation = chunk_loader(market, store, job_id)
    validation(round_)  # not revealed yet: say so before any work
    try:
        spec = _spec(market, store, job_id)
    except VerifyError as exc:
        raise CannotVerify(job_id, round_, str(exc)) from exc
    corrected = set(market.corrections(job_id))
    participants = market.participants(job_id)
    last: ReplayedRound | None = None
    try:
        for step in replay(market, store, spec, job_id, validation, policy, posts):
            last = step
    except InputModelUnavailable as exc:
        raise CannotVerify(job_id, exc.post.round, f"its input model: {exc.cause}") from exc
    except StorageUnavailable as exc:
        raise CannotVerify(job_id, round_, f"the content store is unreachable: {exc}") from exc
    assert last is not None and last.post.round == round_
    return _round_check(job_id, last, participants, store, round_ in corrected)


# -- the whole job ------------------------------------------------------------------------------
def verify_job(market: MarketClient, store: ContentStore, job_id: int) -> VerifyReport:
    """Re-run every posted round of `job_id` whose chunk is revealed, compare each with its
    result of record, then check the settlement. See the module docstring."""
    _require_job(market, job_id)
    job = market.job(job_id)
    status = JobStatus(int(job.status))
    participants = market.participants(job_id)
    chunks = market.validation_chunks(job_id)
    report = VerifyReport(job_id, status.label, sorted(chunks), participants)
    results = market.results(job_id)
    if status == JobStatus.ABANDONED and bool(job.ownerForfeited):
        # the forfeit undid the round whose chunk the owner withheld: it no longer counts
        counted = [p for p in results if p.round <= int(job.pendingRound)]
        for post in results[len(counted) :]:
            why = "voided: the owner withheld its validation chunk and forfeited the job"
            report.unverified.append(UnverifiedRound(post.round, why))
        results = counted
    # rounds are posted only once the previous one is final (its chunk revealed): only the
    # last posted round can lack its chunk
    ready = [p for p in results if p.round in chunks]
    for post in results[len(ready) :]:
        report.unverified.append(
            UnverifiedRound(post.round, "its validation chunk is not revealed yet")
        )
    report.unverified.sort(key=lambda u: u.round)
    if ready:
        try:
            spec = _spec(market, store, job_id)
        except VerifyError as exc:
            report.error = str(exc)
            return report
        _check_rounds(market, store, job_id, spec, ready, report)
    _check_settlement(market, job_id, job, status, participants, results, report)
    return report


def _check_rounds(
    market: MarketClient,
    store: ContentStore,
    job_id: int,
    spec: JobSpec,
    posts: Sequence[RoundPost],
    report: VerifyReport,
) -> None:
    """One check per round of `posts`, up to the first that cannot be re-run; that one and the
    rest go to `report.unverified` (or `report.error` when the auditor's store is down)."""
    participants = report.trainers
    corrected = set(market.corrections(job_id))
    validation = chunk_loader(market, store, job_id)
    try:
        for step in replay(market, store, spec, job_id, validation, STRICT, posts):
            check = _round_check(job_id, step, participants, store, step.post.round in corrected)
            report.rounds.append(check)
    except InputModelUnavailable as exc:
        if isinstance(exc.cause, StorageUnavailable):
            report.error = str(CannotVerify(job_id, exc.post.round, str(exc.cause)))
            return
        # the model a posted round named cannot be fetched: that round's post is at fault
        check = _posted_check(job_id, exc.post, exc.post.round in corrected)
        check.ok = False
        check.mismatches.append(
            Mismatch(
                exc.post.round,
                None,
                "input model",
                _hex(exc.model_hash),
                f"unavailable: {exc.cause}",
            )
        )
        report.rounds.append(check)
    except CannotVerify as exc:
        _not_verified(report, posts, exc.round, exc.why)
    except StorageUnavailable as exc:
        done = len(report.rounds)
        round_ = posts[done].round if done < len(posts) else posts[-1].round
        report.error = str(CannotVerify(job_id, round_, f"the content store is unreachable: {exc}"))


def _not_verified(report: VerifyReport, posts: Sequence[RoundPost], from_round: int, why: str):
    for post in posts:
        if post.round >= from_round:
            report.unverified.append(UnverifiedRound(post.round, why))
    report.unverified.sort(key=lambda u: u.round)


def _posted_check(job_id: int, post: RoundPost, corrected: bool) -> RoundCheck:
    """A check holding the result of record, nothing recomputed yet."""
    check = RoundCheck(post.round, True, corrected=corrected, post=post)
    check.scores_posted, check.reasons_posted = list(post.scores), list(post.reasons)
    check.model_hash_posted = _hex(post.model_hash)
    check.digest_posted = _hex(
        round_digest(job_id, post.round, post.model_hash, post.scores, post.reasons)
    )
    return check


def _round_check(
    job_id: int,
    step: ReplayedRound,
    participants: list[str],
    store: ContentStore,
    corrected: bool,
) -> RoundCheck:
    """Compare one recomputed round with its result of record: reasons, scores, model hash and
    content, and their digest."""
    post, outcome = step.post, step.outcome
    check = _posted_check(job_id, post, corrected)
    check.recomputed = RecomputedRound(
        job_id,
        post.round,
        step.model_hash,
        outcome.next_model_blob,
        list(outcome.scores_fp),
        list(outcome.reasons),
    )
    check.scores_recomputed, check.reasons_recomputed = outcome.scores_fp, outcome.reasons
    check.model_hash_recomputed = _hex(step.model_hash)
    check.digest_recomputed = _hex(check.recomputed.digest)
    check.validation_loss = float(outcome.loss_after)
    check.validation_accuracy = float(outcome.accuracy_after)
    check.epsilon = [o.epsilon for o in outcome.outcomes]
    for k, trainer in enumerate(participants):
        posted_r = post.reasons[k] if k < len(post.reasons) else None
        posted_s = post.scores[k] if k < len(post.scores) else None
        if posted_r != outcome.reasons[k]:
            check.mismatches.append(
                Mismatch(post.round, trainer, "reason", posted_r, outcome.reasons[k])
            )
        if posted_s != outcome.scores_fp[k]:
            check.mismatches.append(
                Mismatch(post.round, trainer, "score", posted_s, outcome.scores_fp[k])
            )
    if check.model_hash_posted != check.model_hash_recomputed:
        check.mismatches.append(
            Mismatch(
                post.round, None, "model hash", check.model_hash_posted, check.model_hash_recomputed
            )
        )
    elif not _has(store, post.model_cid):
        check.mismatches.append(
            Mismatch(post.round, None, "model content", post.model_cid, "not in the store")
        )
    check.ok = not check.mismatches
    return check


def _has(store: ContentStore, cid: str) -> bool:
    """Whether the store has `cid`; an unreachable store is not the poster's fault."""
    try:
        return bool(store.has(cid))
    except StorageError:
        return True


# -- settlement ---------------------------------------------------------------------------------
def _check_settlement(
    market: MarketClient,
    job_id: int,
    job: Any,
    status: JobStatus,
    participants: list[str],
    results: list[RoundPost],
    report: VerifyReport,
) -> None:
    """Slashes (net of reversals), pools, rewards and refund against `backend.audit.settlement`,
    from the results of record."""
    settled = status in (JobStatus.SETTLED, JobStatus.ABANDONED)
    slashes = sorted(
        expected_slashes(
            participants, results, int(job.stakeRequired), int(job.slashBps), settled=settled
        )
    )
    reversed_ = [
        (int(e["round"]), str(e["trainer"]), int(e["amount"]))
        for e in market.job_events(job_id, "SlashReversed")
    ]
    applied = [
        (int(e["round"]), str(e["trainer"]), int(e["amount"])) for e in market.slashes(job_id)
    ]
    actual = sorted(net_slashes(applied, reversed_))
    if slashes != actual:
        report.settlement.append(Mismatch(None, None, "slashes", actual, slashes))
    slashed_pool = sum(a for _, _, a in slashes)
    if int(job.slashedPool) != slashed_pool:
        report.settlement.append(
            Mismatch(None, None, "slashedPool", int(job.slashedPool), slashed_pool)
        )
    if status not in (JobStatus.SETTLED, JobStatus.ABANDONED, JobStatus.CANCELLED):
        return
    totals = score_totals(participants, results)
    terms = _settlement_terms(market, job_id, job, status, results)
    expected = expected_payouts(
        int(job.reward), slashed_pool, totals, status, len(results), int(job.rounds), **terms
    )
    _check_rewards(market, job_id, participants, totals, expected, report)
    if status == JobStatus.CANCELLED:
        pass
    else:
        for name, have, want in (
            ("rewardPool", int(job.rewardPool), expected.pool),
            ("forfeitPool", int(job.forfeitPool), expected.forfeit_pool),
        ):
            if have != want:
                report.settlement.append(Mismatch(None, None, name, have, want))
    if int(job.ownerRefund) != expected.refund:
        report.settlement.append(
            Mismatch(None, None, "ownerRefund", int(job.ownerRefund), expected.refund)
        )


def _settlement_terms(
    market: MarketClient, job_id: int, job: Any, status: JobStatus, results: list[RoundPost]
) -> dict[str, Any]:
    """What an abandoned job's settlement depends on beyond the scores: who is at fault, the
    bond forfeited to the trainers and who revealed in the round the aggregator failed."""
    if status != JobStatus.ABANDONED:
        return {}
    if bool(job.ownerForfeited):
        return {"owner_fault": True}
    failed_round = len(results) + 1
    revealers = [r.trainer for r in market.reveals(job_id, failed_round)]
    # a missed post forfeits the whole bond to the trainers; a corrected round already paid it out
    overturned = bool(market.corrections(job_id))
    bond = 0 if overturned else int(market.job_created(job_id).get("aggregatorBond", 0))
    return {"forfeit": bond, "revealers": revealers}


def _check_rewards(
    market: MarketClient,
    job_id: int,
    participants: list[str],
    totals: dict[str, int],
    expected: Settlement,
    report: VerifyReport,
) -> None:
    """Each trainer's paid (claimed or claimable) reward against the expected one."""
    claimed = {str(e["trainer"]): int(e["reward"]) for e in market.claims(job_id)}
    for trainer in participants:
        paid = claimed[trainer] if trainer in claimed else market.reward_of(job_id, trainer)
        want = expected.rewards[trainer]
        report.payouts[trainer] = {
            "total_score": totals[trainer],
            "reward_wei": paid,
            "expected_wei": want,
            "claimed": int(trainer in claimed),
        }
        if paid != want:
            report.settlement.append(Mismatch(None, trainer, "reward", paid, want))


# -- the checks' own words ----------------------------------------------------------------------
def recomputed_details(
    market: MarketClient, store: ContentStore, job_id: int
) -> dict[int, dict[str, tuple[int, str]]]:
    """round -> trainer -> (reason, detail) as the round's checks give them when re-run from
    public artifacts (the replay `verify_job` compares), for each counted round whose chunk is
    revealed, up to the first that cannot be re-run (those are left out, not guessed)."""
    _require_job(market, job_id)
    job = market.job(job_id)
    results = market.results(job_id)
    if JobStatus(int(job.status)) == JobStatus.ABANDONED and bool(job.ownerForfeited):
        results = [p for p in results if p.round <= int(job.pendingRound)]
    chunks = market.validation_chunks(job_id)
    ready = [p for p in results if p.round in chunks]
    details: dict[int, dict[str, tuple[int, str]]] = {}
    if not ready:
        return details
    try:
        spec = _spec(market, store, job_id)
        validation = chunk_loader(market, store, job_id)
        for step in replay(market, store, spec, job_id, validation, STRICT, ready):
            details[step.post.round] = {
                o.trainer: (int(o.reason), o.detail) for o in step.outcome.outcomes
            }
    except (VerifyError, InputModelUnavailable, StorageError, DataError):
        # what was re-run stands; the rest cannot be re-run (yet), or its committed chunk is
        # data the job's model cannot read
        pass
    return details
