"""A job's life on chain, from the owner's side: create (escrow), start, reveal the pending
round's validation chunk, finalize, refund, follow its status and download its model.

The owner keeps each job's validation package (`backend.core.valpackage`: the split plus each
chunk's salt and CID) under <home>/owner/<market>/job-<id>/:

    validation.npz   the package (arrays x, y, salts, cids): give the same file to the aggregator
    validation.json  what is public once revealed: the root and each chunk's round, sha256, CID

After round r is posted, chunk r must be revealed within the job's post duration (by the
aggregator holding the package, else by the owner: `reveal_chunk`), or anyone can abandon the
job and the owner forfeits the whole reward to the trainers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from aggregator.round.gather import FetchPolicy, fetch_reveal
from backend.chain.base import TxResult
from backend.chain.market import JobInfo, JobParams, MarketClient
from backend.core.codec import read_header
from backend.core.errors import ConfigError, DataError, FedMarketError, Reason, UpdateRejected
from backend.core.jobstatus import JobStatus
from backend.core.privacy import PrivacyClaim, budget_note, claim_from_metadata
from backend.core.units import score_value
from backend.core.valpackage import ValidationPackage
from backend.owner.publish import JobArtifacts, publish_job
from backend.protocol.fetch import fetch_job_spec
from backend.storage import ContentStore, Transfer, fetch_verified


def existing_job(market: MarketClient, job_id: int) -> JobInfo:
    """The job's record; a ConfigError if the market has no such job."""
    job = market.job(job_id)
    if job.status_enum == JobStatus.NONE:
        raise ConfigError(f"there is no job {job_id} on market {market.address}")
    return job


def preflight_job(
    market: MarketClient, owner: LocalAccount, params: JobParams, reward_wei: int
) -> None:
    """Raise what creating the job would (a revert, too little ETH), before anything is
    published or sent."""
    market.check_create_job(owner, params, reward_wei)


def min_challenge_window(market: MarketClient) -> int:
    """The market's shortest challenge window (per deployment): a job.toml's default."""
    return market.min_challenge_window()


def create_job(
    market: MarketClient,
    store: ContentStore,
    owner: LocalAccount,
    artifacts: JobArtifacts,
    params: JobParams,
    reward_wei: int,
    upload_progress: Transfer | None = None,
) -> tuple[int, TxResult]:
    """Publish the spec and initial weights, then create the job escrowing `reward_wei`.

    `params`: createJob's arguments (see `publish.job_params`). Run `preflight_job` first, so
    that what can fail on chain fails before anything is published. Returns (job id, tx).
    """
    publish_job(store, artifacts, upload_progress)
    return market.create_job(owner, params, reward_wei)


def owner_job_dir(home: Path, market_address: str, job_id: int) -> Path:
    """Where the owner keeps what belongs to one job (its private validation package)."""
    return home / "owner" / market_address.lower() / f"job-{job_id}"


def keep_validation(job_dir: Path, artifacts: JobArtifacts) -> Path:
    """Keep the validation package privately; returns the package file."""
    package = artifacts.validation
    job_dir.mkdir(parents=True, exist_ok=True)
    kept = job_dir / "validation.npz"
    kept.write_bytes(package.to_bytes())
    chunks = []
    for r in range(1, package.rounds + 1):
        reveal = package.reveal(r)
        chunks.append({"round": r, "sha256": reveal.content_hash.hex(), "cid": reveal.cid})
    summary = {"root": package.root.hex(), "rounds": package.rounds, "chunks": chunks}
    (job_dir / "validation.json").write_text(json.dumps(summary, indent=1))
    return kept


def kept_validation(job_dir: Path, job_id: int) -> Path:
    """The validation package kept for a job; a ConfigError if it is not kept here."""
    kept = job_dir / "validation.npz"
    if not kept.exists():
        raise ConfigError(f"the validation package of job {job_id} is not kept here ({kept})")
    return kept


def load_package(job: JobInfo, blob: bytes, source: str) -> ValidationPackage:
    """A validation package checked against the job's `validationRoot` (before anything is
    published); `source` names where the blob came from in the errors."""
    try:
        package = ValidationPackage.from_bytes(blob)
        root = package.root
    except DataError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if package.rounds != int(job.rounds) or root != bytes(job.validationRoot):
        raise ConfigError(f"{source} does not match job {job.job_id}'s validation root")
    return package


@dataclass(frozen=True)
class RevealedChunk:
    """A validation chunk this owner published and revealed."""

    round: int
    cid: str
    result: TxResult


def chunk_due(market: MarketClient, job: JobInfo) -> int | None:
    """The round whose validation chunk awaits its reveal (None if none); a ConfigError once its
    reveal window has closed (the job can then only be abandoned, at the owner's cost)."""
    pending = int(job.pendingRound)
    if pending == 0 or int(job.finalAt) != 0:
        return None
    due = int(job.postedAt) + int(job.postDuration)
    if market.chain.now() > due:
        raise ConfigError(
            f"job {job.job_id}: round {pending}'s validation chunk was due by {due} (chain time "
            f"{market.chain.now()}); too late to reveal it: the owner forfeits the reward"
        )
    return pending


def reveal_chunk(
    market: MarketClient,
    store: ContentStore,
    sender: LocalAccount,
    job: JobInfo,
    package: ValidationPackage,
) -> RevealedChunk | None:
    """Publish the pending round's validation chunk and reveal it on chain, starting the
    round's challenge window; None when no chunk is due (none posted, or already revealed)."""
    round_ = chunk_due(market, job)
    if round_ is None:
        return None
    chunk = package.reveal(round_)
    cid = store.put(chunk.blob)
    if cid != chunk.cid:
        raise ConfigError(
            f"job {job.job_id}: the store named round {round_}'s chunk {cid}, not {chunk.cid} "
            "as committed (publish through the store the job was created with)"
        )
    result = market.reveal_validation_chunk(
        sender, job.job_id, round_, chunk.content_hash, cid, chunk.salt, chunk.proof
    )
    return RevealedChunk(round_, cid, result)


def start_job(market: MarketClient, owner: LocalAccount, job_id: int) -> TxResult:
    """Start a job that has its minimum number of trainers."""
    return market.start(owner, job_id)


def finalize_job(market: MarketClient, owner: LocalAccount, job_id: int) -> TxResult:
    """Settle a job after its last round: rewards become claimable. A job of more than 256
    trainers settles in further `settle` transactions, sent here too; the finalize result."""
    result = market.finalize(owner, job_id)
    market.finish_settlement(owner, job_id)
    return result


def refund_job(market: MarketClient, owner: LocalAccount, job_id: int) -> TxResult:
    """Take back what the rewards did not use (after finalization)."""
    return market.claim_refund(owner, job_id)


def privacy_claims(
    market: MarketClient, store: ContentStore, job_id: int, max_bytes: int
) -> dict[str, list[PrivacyClaim | str | None]]:
    """Each participant's privacy claim per posted round, from its revealed update's header:
    the claim, None (no update or no claim), or why it is unreadable ('unavailable',
    'invalid: ...'). Reads every revealed update, each only up to the job's
    `max_update_bytes` (`max_bytes`): for DP jobs only."""
    claims: dict[str, list[PrivacyClaim | str | None]] = {
        t: [] for t in market.participants(job_id)
    }
    for post in market.round_posts(job_id):
        for entry in market.round_entries(job_id, post.round):
            claims.setdefault(entry.trainer, []).append(_claim_of(store, entry.reveal, max_bytes))
    return claims


def _claim_of(store: ContentStore, reveal: Any, max_bytes: int) -> PrivacyClaim | str | None:
    if reveal is None:
        return None
    # capped as the aggregator caps it: a hostile reveal must not make a status call pull GBs
    got = fetch_reveal(store, reveal, FetchPolicy(), max_bytes)
    if got.reason == Reason.TOO_LARGE:
        return f"invalid: {got.detail}"
    if got.blob is None:
        return "unavailable"
    try:
        return claim_from_metadata(read_header(got.blob, None))
    except UpdateRejected as exc:
        return f"invalid: {exc.detail}"


def job_status(
    market: MarketClient, job: JobInfo, store: ContentStore | None = None
) -> dict[str, Any]:
    """A job's status, phase, rounds and participants (the `owner status --json` record).

    With the `store`, a job that asks for DP-SGD also shows each participant's claimed ε per
    posted round (`epsilon_by_round`), its latest (`epsilon`, cumulative) and how that compares
    with the job's target (`privacy`: '' when it complies)."""
    job_id = job.job_id
    spec = None if store is None else _spec_or_none(market, store, job_id)
    privacy = None if spec is None else spec.privacy
    claims = (
        {}
        if store is None or spec is None or privacy is None
        else privacy_claims(market, store, job_id, spec.aggregation.max_update_bytes)
    )
    participants = []
    for address in market.participants(job_id):
        record = market.participant(job_id, address)
        participants.append(
            {
                "trainer": address,
                "score_total": score_value(record["totalScore"]),
                "flagged_rounds": int(record["flaggedRounds"]),
                "claimed": bool(record["claimed"]),
            }
            | ({} if privacy is None else _privacy_fields(claims.get(address, []), privacy))
        )
    return {
        "job_id": job_id,
        "status": job.status_enum.label,
        "phase": market.phase_of(job_id).name.lower(),
        "round": int(job.currentRound),
        "rounds": int(job.rounds),
        "rounds_posted": len(market.round_posts(job_id)),
        "owner": job.owner,
        "aggregator": job.aggregator,
        "reward_wei": int(job.reward),
        "stake_required_wei": int(job.stakeRequired),
        "trainers": f"{int(job.participantCount)} (min {int(job.minTrainers)}, "
        f"max {int(job.maxTrainers)})",
        "participants": participants,
        "pending_round": int(job.pendingRound),
        "final_at": int(job.finalAt),
        "dispute_open": bool(job.disputeOpen),
        "challenge_window_s": int(job.challengeWindow),
        "aggregator_bond_wei": int(job.aggregatorBond),
        "validation_chunks_revealed": sorted(market.validation_chunks(job_id)),
    }


def _spec_or_none(market: MarketClient, store: ContentStore, job_id: int) -> Any:
    """The job's spec (read once for its [privacy] table and update cap); None when it cannot
    be read (the status shows what the chain says without it)."""
    try:
        return fetch_job_spec(market, store, job_id)
    except FedMarketError:
        return None


def _privacy_fields(by_round: list[PrivacyClaim | str | None], privacy: Any) -> dict[str, Any]:
    """A DP job's participant fields: the claimed ε per round, the latest (cumulative) one,
    and how it compares with what the job asks (`budget_note`; '' before any update)."""
    claims = [c for c in by_round if isinstance(c, PrivacyClaim)]
    latest = claims[-1] if claims else None
    revealed = any(c is not None for c in by_round)
    note = budget_note(latest, privacy) if revealed or latest else ""
    # ε is cumulative: a claim below an earlier one understates what was spent
    peak = max((c.epsilon for c in claims), default=0.0)
    if latest is not None and latest.epsilon < peak:
        note = "; ".join(filter(None, [note, f"ε fell from {peak:.3g} to {latest.epsilon:.3g}"]))
    return {
        "epsilon": None if latest is None else latest.epsilon,
        "epsilon_by_round": [c.epsilon if isinstance(c, PrivacyClaim) else c for c in by_round],
        "privacy": note,
    }


@dataclass(frozen=True)
class DownloadedModel:
    """A job's current (or final) model, checked against its on-chain sha256."""

    blob: bytes
    sha256: bytes
    rounds_posted: int
    rounds: int


def download_model(
    market: MarketClient, store: ContentStore, job: JobInfo, progress: Transfer | None = None
) -> DownloadedModel:
    """Fetch the job's current model; a ConfigError if the chain's two records disagree."""
    job_id = job.job_id
    model_hash, cid = market.current_model(job_id)
    chain_hash = bytes(job.modelHash)
    if any(chain_hash) and chain_hash != model_hash:
        raise ConfigError(f"job {job_id}: the posted model does not match getJob's modelHash")
    blob = fetch_verified(store, cid, model_hash, progress)
    return DownloadedModel(blob, model_hash, len(market.round_posts(job_id)), int(job.rounds))
