"""`fedmarket trainer run`: the trainer's loop, one decision per chain read, restart-safe.

Each step reads the job's round, phase and this trainer's participant record, then does at most
one thing: train + commit + publish sealed in the commit phase (publishing again if a crash or
a store outage interrupted it), reveal in the reveal phase. Pending
reveals (salt, cid, hash) live in TrainerClient's state file, written before the commit is
sent, so after a restart the loop reveals (or re-sends the same commitment) instead of
committing a second, different update.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.chain.market import JobInfo, JobStatus, Phase, snapshot_grace
from backend.core.errors import ConfigError, StorageUnavailable
from trainer_client.client import TrainerClient

ENDED = (JobStatus.FINISHED, JobStatus.SETTLED, JobStatus.ABANDONED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class Step:
    # committed | recommitted | published | revealed | waiting | round-done | missed | ended
    action: str
    round: int
    detail: str = ""


def step(client: TrainerClient, job_id: int) -> Step:
    """Look at the chain and do at most one action for `job_id`."""
    market = client.market
    job = market.job(job_id)
    status = job.status_enum
    if status == JobStatus.NONE:
        raise ConfigError(f"there is no job {job_id} on market {market.address}")
    part = market.participant(job_id, client.address)
    if not part["joined"]:
        raise ConfigError(f"{client.address} has not joined job {job_id}; `trainer join` first")
    if status in ENDED:
        return Step("ended", int(job.currentRound), status.label)
    if status == JobStatus.CREATED:
        return Step("waiting", 0, "the job has not started yet")
    round_ = int(job.currentRound)
    phase = market.phase_of(job_id)
    committed = int(part["lastCommitRound"]) == round_
    revealed = int(part["lastRevealRound"]) == round_
    pending = client.pending.get((job_id, round_))
    if revealed:
        if pending is not None and not pending.revealed:  # revealed, then crashed
            pending.revealed = True
            client.save_state()
            client.drop_outbox(job_id, round_)
        return Step("round-done", round_, "revealed; waiting for the next round")
    if phase == Phase.COMMIT:
        if committed and pending is not None and not pending.published:
            try:  # committed, then crashed or the store was down
                client.publish(job_id, round_)
            except StorageUnavailable as exc:
                return Step("waiting", round_, f"store unreachable, publishing again: {exc}")
            return Step("published", round_, f"sealed update {pending.cid}")
        if committed:
            return Step("waiting", round_, "committed; waiting for the reveal phase")
        if pending is not None:  # prepared before a crash, never landed: same update again
            client.send_commit(job_id, round_)
            client.publish(job_id, round_)
            return Step("recommitted", round_, f"cid {pending.cid}")
        contribution = client.participate(job_id, round_)
        return Step(
            "committed", round_, f"cid {contribution.cid}, loss {contribution.train_loss:.4f}"
        )
    if phase == Phase.REVEAL:
        if not committed:
            return Step("missed", round_, "the commit phase ended before this trainer committed")
        if pending is None:
            return Step("missed", round_, "committed, but the salt is not in the state file")
        if not pending.published and not client.has_outbox(job_id, round_):
            return Step("missed", round_, "committed, but the update is not in the outbox")
        wait = reveal_wait(client, job)
        if wait > 0:
            return Step("waiting", round_, f"revealing in {wait} s (the aggregator's snapshot)")
        client.reveal(job_id, round_)
        return Step("revealed", round_, f"cid {pending.cid}")
    return Step("waiting", round_, f"phase {phase.name.lower()}: waiting for the aggregator")


def reveal_wait(client: TrainerClient, job: JobInfo) -> int:
    """Seconds (chain time) before this trainer reveals: the aggregator snapshots the sealed
    updates when the commit phase closes, before anyone reveals (`Chain.reveal_grace_s`)."""
    chain = client.market.chain
    return max(0, int(job.commitEnd) + snapshot_grace(chain, job) - chain.next_block_time())


def run(
    client: TrainerClient,
    job_id: int,
    *,
    once: bool = False,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
    report: Callable[[Step], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Step]:
    """Loop until the job ends (or, with `once`, until one round is revealed)."""
    done: list[Step] = []
    last: Step | None = None
    start = time.monotonic()
    while True:
        s = step(client, job_id)
        if s != last and report is not None:
            report(s)
        last = s
        if s.action in ("committed", "recommitted", "published", "revealed", "missed"):
            done.append(s)
        if s.action == "ended" or (once and s.action == "revealed"):
            return done
        if s.action in ("committed", "recommitted", "published", "revealed"):
            continue  # the next phase may already be open (early close)
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise ConfigError(
                f"gave up after {timeout_s:g} s: round {s.round} is still at '{s.detail}'"
            )
        sleep(poll_s)
