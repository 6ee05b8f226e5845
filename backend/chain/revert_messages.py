"""What a contract revert means to the person who caused it, and what to do about it.

The contract speaks in custom errors (`WrongStatus(jobId=2, status=3)`); a user needs "job 2 is
finished but not finalized: run `fedmarket owner finalize 2` first". `explain` turns every
custom error a user of the role commands can hit into such a sentence; the raw error stays at
the end of the message, so scripts and searches still find it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from backend.core.jobstatus import JobStatus
from backend.core.units import eth_text

Args = Mapping[str, Any]


def _eth(wei: Any) -> str:
    return f"{eth_text(wei)} ETH"


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, bytes | bytearray) else str(value)


def _ppm(value: Any) -> str:
    return f"{int(value or 0) / 1e6:.3f}"


def _status(args: Args) -> JobStatus:
    try:
        return JobStatus(int(args.get("status", 0)))
    except ValueError:
        return JobStatus.NONE


# When someone other than the owner may cancel (FedMarket.cancel).
_CANCEL_WHEN = (
    " before its join deadline (anyone may cancel after it if too few trainers joined, or one "
    "day after it if enough joined to start)"
)

# What must happen before `function` can succeed, by the status the job is in now.
_NEXT_STEP = {
    JobStatus.CREATED: "it must be started first (`fedmarket owner start {job}`, once "
    "min_trainers have joined)",
    JobStatus.RUNNING: "its rounds must all be posted by the aggregator first, then it is "
    "finalized (`fedmarket owner finalize {job}`)",
    JobStatus.FINISHED: "it must be finalized first: `fedmarket owner finalize {job}` "
    "(anyone may run it)",
}

# Which statuses each function needs: in words, and the first status that satisfies it.
_NEEDS: dict[str, tuple[str, JobStatus]] = {
    "join": ("open for joining", JobStatus.CREATED),
    "start": ("open for joining", JobStatus.CREATED),
    "cancel": ("open for joining", JobStatus.CREATED),
    "commit": ("running", JobStatus.RUNNING),
    "reveal": ("running", JobStatus.RUNNING),
    "postRound": ("running", JobStatus.RUNNING),
    "abandon": ("running", JobStatus.RUNNING),
    "finalize": ("finished", JobStatus.FINISHED),
    "claim": ("finalized, abandoned or cancelled", JobStatus.SETTLED),
    "claimRefund": ("finalized, abandoned or cancelled", JobStatus.SETTLED),
}


def _wrong_status(fn: str, a: Args) -> str:
    job, status = a.get("jobId"), _status(a)
    words, first = _NEEDS.get(fn, ("in another state", JobStatus.NONE))
    text = f"job {job} is {status.meaning}; {fn} needs it {words}"
    step = _NEXT_STEP.get(status)
    if step and status < first:  # it can still get there: say what comes next
        return f"{text}: {step.format(job=job)}"
    return f"{text}, and it is past that stage" if status > first else text


_EXPLAIN: dict[str, Callable[[str, Args], str]] = {
    "WrongStatus": _wrong_status,
    "UnknownJob": lambda fn, a: f"there is no job {a.get('jobId')} on this market",
    "NotOwner": lambda fn, a: (
        f"only job {a.get('jobId')}'s owner may {fn}"
        + (_CANCEL_WHEN if fn == "cancel" else "")
        + f"; {a.get('caller')} is not it (sign with --account OWNER)"
    ),
    "StartTooLate": lambda fn, a: (
        f"job {a.get('jobId')} can no longer start: a day has passed since its join deadline "
        "(it can only be cancelled now, by anyone; its trainers then claim their stake back)"
    ),
    "JobTooLong": lambda fn, a: (
        f"the job could run {int(a.get('duration', 0)) / 86400:g} days (join_duration + rounds x "
        f"(commit + reveal + post durations)); the contract allows "
        f"{int(a.get('maxDuration', 0)) / 86400:g}: shorten the durations or the rounds"
    ),
    "OwnerIsAggregator": lambda fn, a: (
        f"{a.get('owner')} cannot be the aggregator of its own job (an owner who scores its own "
        "job could flag trainers and keep their stakes): name another account as aggregator"
    ),
    "ConflictOfInterest": lambda fn, a: (
        f"{a.get('account')} is job {a.get('jobId')}'s owner or aggregator and cannot join it "
        "as a trainer: join with another account"
    ),
    "NotParticipant": lambda fn, a: (
        f"{a.get('caller')} has not joined job {a.get('jobId')} "
        f"(`fedmarket trainer join {a.get('jobId')}` while it is open)"
    ),
    "NotAggregator": lambda fn, a: f"{a.get('caller')} is not job {a.get('jobId')}'s aggregator",
    "AlreadyJoined": lambda fn, a: f"{a.get('trainer')} has already joined job {a.get('jobId')}",
    "JobFull": lambda fn, a: f"job {a.get('jobId')} already has its max_trainers",
    "JoinClosed": lambda fn, a: f"job {a.get('jobId')}'s join deadline has passed",
    "ReliabilityTooLow": lambda fn, a: (
        f"your reliability {_ppm(a.get('have'))} is below the job's minimum {_ppm(a.get('need'))}"
    ),
    "ReliabilityWeightTooLow": lambda fn, a: (
        f"your reliability rests on {_eth(a.get('have', 0))} of stake-weighted history (stake "
        f"locked in settled jobs, decayed); the job asks for {_eth(a.get('need', 0))}: build "
        "it in ungated jobs first (`fedmarket trainer status` shows yours)"
    ),
    "NotEnoughTrainers": lambda fn, a: (
        f"only {a.get('have')} trainer(s) joined; the job needs {a.get('need')} before it can start"
    ),
    "NotInCommitPhase": lambda fn, a: (
        f"job {a.get('jobId')} round {a.get('round')} is not "
        "taking commitments now (wait for the next round's commit phase)"
    ),
    "NotInRevealPhase": lambda fn, a: (
        f"job {a.get('jobId')} round {a.get('round')} is not in its "
        "reveal phase (it opens when every trainer has committed or the commit phase ends)"
    ),
    "AlreadyCommitted": lambda fn, a: (
        f"{a.get('trainer')} already committed to round {a.get('round')} of job {a.get('jobId')}"
    ),
    "NothingCommitted": lambda fn, a: (
        f"{a.get('trainer')} made no commitment in round "
        f"{a.get('round')} of job {a.get('jobId')}, so there is nothing to reveal"
    ),
    "AlreadyRevealed": lambda fn, a: f"{a.get('trainer')} already revealed round {a.get('round')}",
    "CommitmentMismatch": lambda fn, a: (
        "the revealed hash, CID and salt do not match the "
        f"commitment of {a.get('trainer')} in round {a.get('round')} (a different update or salt)"
    ),
    "WrongRound": lambda fn, a: f"the job is at round {a.get('expected')}, not {a.get('given')}",
    "RevealPhaseOpen": lambda fn, a: f"round {a.get('round')}'s reveal phase is still open",
    "PostDeadlinePassed": lambda fn, a: (
        f"round {a.get('round')}'s post deadline has passed "
        f"(anyone may now `abandon` job {a.get('jobId')})"
    ),
    "DeadlineNotPassed": lambda fn, a: f"job {a.get('jobId')}'s post deadline has not passed",
    "AlreadyClaimed": lambda fn, a: (
        f"{a.get('account')} has already claimed from job {a.get('jobId')}"
    ),
    "ValidationMismatch": lambda fn, a: (
        "the validation file does not match the commitment "
        f"made when job {a.get('jobId')} was created"
    ),
    "NotAnAggregator": lambda fn, a: (
        f"{a.get('account')} has not registered as an aggregator: it must run "
        "`fedmarket aggregator register --bond ETH` before a job can name it"
    ),
    "AggregatorBondTooLow": lambda fn, a: (
        f"the aggregator has {_eth(a.get('available', 0))} of free bond and the job needs "
        f"{_eth(a.get('required', 0))} (the reward, unless aggregator_bond says otherwise): "
        "it must add bond (`fedmarket aggregator register --bond ETH`) or you lower "
        "aggregator_bond_eth"
    ),
    "ChallengeWindowTooShort": lambda fn, a: (
        f"challenge_window = {a.get('given')} s is below this market's minimum of "
        f"{a.get('minimum')} s (trainers need time to challenge a round)"
    ),
    "MissingValidationRoot": lambda fn, a: (
        "the job commits to no validation chunks (validation root is zero)"
    ),
    "RoundNotFinal": lambda fn, a: (
        f"round {a.get('round')} of job {a.get('jobId')} is not final yet (its validation "
        "chunk must be revealed and its challenge window must pass): wait, then retry"
    ),
    "DisputeOpen": lambda fn, a: (
        f"a dispute is open on job {a.get('jobId')}: wait for the committee to decide "
        f"(`fedmarket verifier status {a.get('jobId')}`)"
    ),
    "NoChunkDue": lambda fn, a: (
        f"no validation chunk of job {a.get('jobId')} is due for round {a.get('round')} "
        "(only the last posted round's chunk, once, is revealed)"
    ),
    "ChunkRevealClosed": lambda fn, a: (
        f"round {a.get('round')}'s validation chunk was due within the post duration after "
        f"its post; anyone may now make the owner forfeit job {a.get('jobId')} (`forfeit`)"
    ),
    "ChallengeWindowClosed": lambda fn, a: (
        f"round {a.get('round')} of job {a.get('jobId')} cannot be challenged now: it is not "
        "the pending round, its validation chunk is not revealed yet, or its window has passed"
    ),
    "NotChallenger": lambda fn, a: (
        f"{a.get('account')} may not challenge job {a.get('jobId')}: only its trainers and "
        "registered verifiers may (`fedmarket verifier register --bond ETH`)"
    ),
    "DigestMismatch": lambda fn, a: (
        "the result does not hash to the digest it must match "
        f"(expected {_hex(a.get('expected'))}, got {_hex(a.get('given'))})"
    ),
    "BondCoolingDown": lambda fn, a: (
        f"{a.get('account')}'s bond was released recently and can be withdrawn from unix "
        f"time {a.get('until')} (a one-day cooldown lets slashes settle first)"
    ),
    "NotCourt": lambda fn, a: (
        f"{a.get('caller')} is not this market's dispute court (only the court moves bonds and "
        "decides disputes; the deployer binds it once)"
    ),
    "CorrectionPending": lambda fn, a: (
        f"dispute {a.get('disputeId')} was overturned and its correct result may be posted "
        f"until unix time {a.get('correctBy')}; only after that can it lapse"
    ),
    "CourtAlreadyBound": lambda fn, a: "this market's dispute court is already bound",
    "NothingToSettle": lambda fn, a: (
        f"job {a.get('jobId')} has nothing left to settle: it has not ended yet, was "
        "cancelled, or its settlement is already complete"
    ),
    "SettlementPending": lambda fn, a: (
        f"job {a.get('jobId')} ended but its settlement is not complete ({a.get('done')} of "
        f"{a.get('total')} steps): anyone may continue it (MarketClient.finish_settlement; "
        "`fedmarket trainer claim` does it before claiming)"
    ),
    "NotDelegated": lambda fn, a: (
        "the settlement module runs only inside its market (by delegatecall): call the "
        "market's `settle`, not the module"
    ),
    "InvalidRole": lambda fn, a: f"role {a.get('role')} is not 1 (aggregator) or 2 (verifier)",
    "SameAsPosted": lambda fn, a: (
        "your digest equals the posted result's: you agree with the round, there is nothing "
        "to challenge"
    ),
    "NoCommittee": lambda fn, a: (
        f"only {a.get('found')} eligible verifier(s) were found in the committee pool (members "
        "with no stake in the job and a seat's bond free), and a committee needs "
        f"{a.get('needed')}: the round cannot be challenged until more verifiers join the pool"
    ),
    "NotVerifier": lambda fn, a: (
        f"{a.get('account')} has not taken the verifier role: run `fedmarket verifier register`"
    ),
    "AlreadyInPool": lambda fn, a: f"{a.get('account')} is already in the committee pool",
    "NotInPool": lambda fn, a: f"{a.get('account')} is not in the committee pool",
    "UnknownDispute": lambda fn, a: f"there is no dispute {a.get('disputeId')}",
    "WrongDisputeState": lambda fn, a: (
        f"dispute {a.get('disputeId')} is past that step (state {a.get('state')})"
    ),
    "NotMember": lambda fn, a: (
        f"{a.get('account')} is not on dispute {a.get('disputeId')}'s committee"
    ),
    "VoteCommitClosed": lambda fn, a: f"dispute {a.get('disputeId')}'s vote commit phase has ended",
    "AlreadyVoted": lambda fn, a: (
        f"{a.get('member')} already did this step in dispute {a.get('disputeId')}"
    ),
    "VoteRevealNotOpen": lambda fn, a: (
        f"dispute {a.get('disputeId')} is not taking vote reveals now (they open when every "
        "member committed or the commit phase ends, and close at the reveal deadline)"
    ),
    "VoteMismatch": lambda fn, a: (
        "the revealed digest and salt do not match your vote commitment "
        f"in dispute {a.get('disputeId')}"
    ),
    "VotingNotOver": lambda fn, a: (
        f"dispute {a.get('disputeId')}'s votes are not all in; it can be resolved after unix "
        f"time {a.get('revealEnd')}"
    ),
    "NotRegistered": lambda fn, a: (
        f"{a.get('trainer')} is not registered as a trainer "
        "(`fedmarket trainer register --stake ETH`)"
    ),
    "AlreadyRegistered": lambda fn, a: f"{a.get('trainer')} is already registered",
    "ZeroAmount": lambda fn, a: "the amount must be more than 0",
    "InsufficientFreeStake": lambda fn, a: (
        f"only {_eth(a.get('available', 0))} of your stake "
        f"is free and {_eth(a.get('requested', 0))} is needed "
        "(`fedmarket trainer register --stake ETH` adds stake)"
    ),
    "InvalidRounds": lambda fn, a: f"rounds = {a.get('rounds')} is out of the allowed range",
    "InvalidTrainerBounds": lambda fn, a: (
        f"min_trainers = {a.get('min')} and max_trainers = {a.get('max')} are not a valid range"
    ),
    "InvalidDuration": lambda fn, a: "a phase duration is zero or too long",
    "InvalidSlashBps": lambda fn, a: f"slash_bps = {a.get('bps')} is above 10000",
    "ZeroAddress": lambda fn, a: "an address is zero (check the aggregator)",
    "AmountTooLarge": lambda fn, a: f"{_eth(a.get('amount', 0))} is more than a stake can hold",
    "TransferFailed": lambda fn, a: (
        f"sending {_eth(a.get('amount', 0))} to {a.get('to')} "
        "failed: the receiving address refused ETH (a contract without a payable receive)"
    ),
    "InvalidReliability": lambda fn, a: f"reliability {_ppm(a.get('ppm'))} is above 1",
    "NotMarket": lambda fn, a: f"{a.get('caller')} is not the market: only it records reliability",
    "ReentrancyGuardReentrantCall": lambda fn, a: "a re-entrant call was refused",
    # An aggregator's malformed post: its software is wrong, not its user.
    "LengthMismatch": lambda fn, a: (
        f"the post lists {a.get('scores')} scores and "
        f"{a.get('reasons')} reasons for {a.get('expected')} trainers"
    ),
    "UnknownReason": lambda fn, a: f"reason code {a.get('reason')} is not one the contract knows",
    "ScoreTooLarge": lambda fn, a: f"score {a.get('score')} is above the maximum (1e6 = 1.0)",
    "InvalidResult": lambda fn, a: (
        f"{a.get('trainer')} got score {a.get('score')} with "
        f"reason {a.get('reason')}: a flagged or missing update must score 0"
    ),
}


def explain(function: str, error: str, args: Args) -> str | None:
    """A sentence for `error` raised by contract `function`, or None if it has none."""
    how = _EXPLAIN.get(error)
    if how is None:
        return None
    try:
        return f"cannot {function}: {how(function, args)}"
    except (TypeError, ValueError):  # odd args from a foreign contract: fall back to the raw error
        return None
