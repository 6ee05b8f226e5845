"""The API's response models (pydantic): what every endpoint returns, as its OpenAPI shows."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from backend.core.jobstatus import JobStatus

T = TypeVar("T")

# The models carry no docstrings on purpose: pydantic would publish them as schema descriptions
# and change the OpenAPI document.

# The statuses a job can be listed by: every JobStatus but NONE, named by its label.
StatusName = StrEnum(  # type: ignore[misc]
    "StatusName", [(s.label, s.label) for s in JobStatus if s is not JobStatus.NONE]
)


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
    min_reliability_weight_wei: str = Field(
        description="stake-weighted reliability history a trainer needs to join"
    )
    spec_hash: str
    spec_cid: str
    initial_model_hash: str
    initial_model_cid: str
    model_hash: str = Field(description="the latest round's model of record")
    model_cid: str
    validation_root: str = Field(description="Merkle root of the per-round validation chunks")
    chunks_revealed: int = Field(description="validation chunks revealed so far (one per round)")
    validation_revealed: bool = Field(description="every round's validation chunk is revealed")
    aggregator_bond_wei: str
    aggregator_bond_slashed_wei: str
    challenge_window: int = Field(description="seconds a posted round can be challenged")
    dispute_open: bool
    disputes: int
    owner_fault: bool | None = Field(
        None, description="abandoned jobs: true if the owner withheld a validation chunk"
    )
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
    chunk_hash: str | None = Field(None, description="the round's revealed validation chunk")
    chunk_cid: str | None
    final_at: int | None = Field(None, description="end of the round's challenge window")
    dispute: str | None = Field(None, description="disputed | upheld | overturned | no decision")
    corrected: bool = Field(description="a dispute replaced the posted result")
    voided: bool = Field(description="undone when the owner forfeited (its chunk was withheld)")
    overturned_model_hash: str | None = Field(None, description="the model the aggregator posted")
    overturned_model_cid: str | None


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
    overturned_score: int | None = Field(None, description="the score the aggregator posted")
    overturned_reason: int | None = Field(None, description="the reason the aggregator posted")


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
    reversed: bool = Field(description="a dispute overturned the round and gave the stake back")


class Vote(BaseModel):
    member: str
    committed: bool
    digest: str | None = Field(None, description="the digest the member revealed")


class Dispute(BaseModel):
    dispute_id: int
    job_id: int
    round: int
    challenger: str
    challenger_digest: str
    posted_digest: str
    members: list[str]
    commit_end: int
    reveal_end: int
    state: int = Field(
        description="DisputeCourt state: 1 voting, 2 upheld, 3 overturned, "
        "4 corrected, 5 no decision"
    )
    outcome: str = Field(description="voting | upheld | overturned | no decision")
    winning_digest: str | None
    votes_committed: int
    votes_revealed: int
    corrected: bool = Field(description="the correct result was applied (RoundCorrected)")
    correction_poster: str | None
    correction_tx: str | None
    aggregator_bond_slashed_wei: str
    opened_block: int
    opened_tx: str
    resolved_block: int | None
    votes: list[Vote]


class Trainer(BaseModel):
    address: str
    registered: bool
    stake_balance_wei: str
    reliability_ppm: int
    reliability_jobs: int
    reliability_weight_wei: str = Field(
        description="decayed stake the reliability rests on (its confidence weight)"
    )
    jobs_joined: int


class TrainerDetail(Trainer):
    history: list[Payout]


class SlashExplained(BaseModel):
    round: int = Field(description="0: the settlement's charge for missed rounds")
    amount_wei: str
    reason: int
    reason_label: str
    rule: str = Field(description="what the reason code means")
    reversed: bool
    tx_hash: str
    block_number: int
    evidence: str = Field(description="what proves it, in public records")


class RoundExplained(BaseModel):
    round: int
    state: str = Field(description="posted | open | voided")
    reason: int | None
    reason_label: str | None
    flagged: bool
    meaning: str
    detail: str = Field(description="this trainer's round, written from the record")
    score_fp: int | None = Field(None, description="score of record, fixed point (1e6 = 1.0)")
    score: float | None
    rank: int | None = Field(None, description="1 = the round's best score (ties share a rank)")
    ranked: int
    best_score_fp: int | None
    round_total_fp: int
    round_share: float | None = Field(None, description="score / the round's total score")
    pool_share: float | None = Field(
        None, description="score / the job's total score: the part of the reward pool it earns"
    )
    pool_part_wei: str | None
    slash: SlashExplained | None
    corrected: bool
    dispute: str | None
    overturned_reason_label: str | None
    overturned_score_fp: int | None
    content_hash: str | None
    cid: str | None
    posted_tx: str | None
    chunk_revealed: bool
    checked_detail: str | None = Field(
        None, description="the checks' own words, re-run from public artifacts (CLI --recompute)"
    )


class ReliabilityChange(BaseModel):
    before_ppm: int | None = Field(None, description="none: the trainer's first recorded job")
    after_ppm: int
    contribution_ppm: int
    jobs: int
    weight_wei: str
    block_number: int
    tx_hash: str


class Explanation(BaseModel):
    job_id: int
    trainer: str
    job_status: str
    rounds_posted: int
    rounds: int
    per_round: list[RoundExplained]
    total_score_fp: int
    job_total_score_fp: int
    share: float | None = Field(None, description="total score / the job's total score")
    pool_wei: str
    pool_final: bool = Field(description="false: what finalizing now would pay")
    reward_wei: str
    reward_claimed_wei: str | None
    claimable_wei: str
    slashed_wei: str
    pending_charge_wei: str
    slashes: list[SlashExplained]
    reliability: list[ReliabilityChange]
    notes: list[str]


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


# The error bodies every data endpoint documents (the handlers in `app` produce them).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown job, round or trainer"},
    422: {"model": ErrorBody, "description": "invalid parameters"},
}
