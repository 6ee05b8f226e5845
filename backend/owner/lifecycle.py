"""A job's life on chain, from the owner's side: create (escrow), start, finalize, refund, reveal
the validation split, follow its status and download its model.

The owner keeps each job's validation split under <home>/owner/<market>/job-<id>/ until the
reveal, next to the commitment it was posted with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from backend.chain.base import TxResult
from backend.chain.market import JobInfo, JobParams, MarketClient, validation_commitment
from backend.core.errors import ConfigError
from backend.core.jobstatus import JobStatus
from backend.core.units import score_value
from backend.owner.publish import JobArtifacts, predict_cid, publish_job
from backend.storage import ContentStore, Transfer, fetch_verified, sha256_bytes


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
    """Where the owner keeps what belongs to one job (its private validation split)."""
    return home / "owner" / market_address.lower() / f"job-{job_id}"


def keep_validation(job_dir: Path, artifacts: JobArtifacts) -> Path:
    """Keep the validation split privately (until the reveal); returns the kept file."""
    job_dir.mkdir(parents=True, exist_ok=True)
    kept = job_dir / "validation.npz"
    kept.write_bytes(artifacts.validation_blob)
    (job_dir / "validation.json").write_text(
        json.dumps(
            {"sha256": artifacts.validation_hash.hex(), "cid": artifacts.validation_cid}, indent=1
        )
    )
    return kept


def kept_validation(job_dir: Path, job_id: int) -> Path:
    """The validation split kept for a job; a ConfigError if it is not kept here."""
    kept = job_dir / "validation.npz"
    if not kept.exists():
        raise ConfigError(f"the validation split of job {job_id} is not kept here ({kept})")
    return kept


@dataclass(frozen=True)
class CheckedValidation:
    """A validation split that matches its job's on-chain commitment, ready to reveal."""

    blob: bytes
    content_hash: bytes
    cid: str


def check_validation(
    job: JobInfo, store: ContentStore, blob: bytes, source: str
) -> CheckedValidation:
    """Check `blob` against the job's validation commitment before anything is published;
    `source` names where the blob came from in the error."""
    content_hash = sha256_bytes(blob)
    cid = predict_cid(store, blob)
    if validation_commitment(content_hash, cid) != bytes(job.validationCommitment):
        raise ConfigError(f"{source} does not match job {job.job_id}'s validation commitment")
    return CheckedValidation(blob, content_hash, cid)


def reveal_validation(
    market: MarketClient,
    store: ContentStore,
    owner: LocalAccount,
    job_id: int,
    validation: CheckedValidation,
) -> tuple[str, TxResult]:
    """Publish the checked validation split and reveal it on chain; returns (cid, transaction)."""
    cid = store.put(validation.blob)
    return cid, market.reveal_validation(owner, job_id, validation.content_hash, cid)


def start_job(market: MarketClient, owner: LocalAccount, job_id: int) -> TxResult:
    """Start a job that has its minimum number of trainers."""
    return market.start(owner, job_id)


def finalize_job(market: MarketClient, owner: LocalAccount, job_id: int) -> TxResult:
    """Settle a job after its last round: rewards become claimable."""
    return market.finalize(owner, job_id)


def refund_job(market: MarketClient, owner: LocalAccount, job_id: int) -> TxResult:
    """Take back what the rewards did not use (after finalization)."""
    return market.claim_refund(owner, job_id)


def job_status(market: MarketClient, job: JobInfo) -> dict[str, Any]:
    """A job's status, phase, rounds and participants (the `owner status --json` record)."""
    job_id = job.job_id
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
        "validation_revealed": bool(job.validationRevealed),
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
