"""The one gather: a round's on-chain reveals plus the content store, turned into `Submission`s.

The aggregator's driver (live rounds and replays) and the auditor build submissions here, so a
revealed update gets the same reason from both:

* no reveal → MISSING;
* posted on chain as UNAVAILABLE (replays only) → taken as such: whether the store had the
  content when the round was posted cannot be re-checked later, and it is not slashable;
* content whose sha256 differs from the revealed hash → HASH_MISMATCH, always *re-derived*,
  never taken from the post. The content behind a cid is public and fixed, so an honest
  aggregator's HASH_MISMATCH reproduces on every replay — while trusting a posted one (it is
  slashable) would let a lying aggregator slash an honest trainer and still verify;
* content not found / store unreachable, after retrying up to `FetchPolicy.timeout_s` →
  UNAVAILABLE (not slashable); if the store was unreachable for every fetched update the
  round cannot be judged at all and `StoreOutage` is raised instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from aggregator.round.records import Submission
from backend.chain.market import MarketClient, Reveal
from backend.core.errors import ContentMismatch, ContentNotFound, Reason, StorageUnavailable
from backend.storage import ContentStore, fetch_verified

__all__ = ["FetchPolicy", "Fetched", "StoreOutage", "fetch_reveal", "gather"]


class StoreOutage(StorageUnavailable):
    """Every revealed blob failed with StorageUnavailable: the aggregator's own store is down."""


@dataclass(frozen=True)
class FetchPolicy:
    """How long missing or unreachable content is retried (0: a single try).

    `strict` (the auditor's): an unreachable store raises instead of marking the update
    UNAVAILABLE, so the auditor's own outage is reported as "cannot verify", never as a
    recomputed reason that would look like the aggregator's fault.
    """

    timeout_s: float = 0.0
    retry_s: float = 0.5
    strict: bool = False


@dataclass(frozen=True)
class Fetched:
    """One revealed update as fetched: its blob or why not, and whether the store was down."""

    blob: bytes | None
    reason: Reason
    detail: str
    store_down: bool = False


def fetch_reveal(store: ContentStore, reveal: Reveal, policy: FetchPolicy) -> Fetched:
    """Fetch and verify one revealed update, retried up to the policy's timeout.

    A hash mismatch is final at once; missing content and an unreachable store are retried
    until `policy.timeout_s`, then the update is marked UNAVAILABLE (not slashable).
    """
    deadline = time.monotonic() + policy.timeout_s
    while True:
        try:
            return Fetched(
                fetch_verified(store, reveal.cid, reveal.content_hash), Reason.ACCEPTED, ""
            )
        except ContentMismatch as exc:
            return Fetched(None, Reason.HASH_MISMATCH, str(exc))
        except (ContentNotFound, StorageUnavailable) as exc:
            down = isinstance(exc, StorageUnavailable)
            if down and policy.strict:
                raise
            if time.monotonic() >= deadline:
                what = "store unreachable" if down else "content not found"
                detail = f"{what} after {policy.timeout_s:g}s: {exc}"
                return Fetched(None, Reason.UNAVAILABLE, detail, down)
            time.sleep(min(policy.retry_s, max(0.0, deadline - time.monotonic())))


def gather(
    market: MarketClient,
    store: ContentStore,
    job_id: int,
    round_: int,
    posted_reasons: Mapping[str, int] | None = None,
    policy: FetchPolicy = FetchPolicy(),
) -> list[Submission]:
    """The round's submissions in participant order, each failure mapped to its reason code.

    `posted_reasons` (trainer → reason posted on chain) is given when replaying a posted round;
    see the module docstring for what is taken from it (UNAVAILABLE only) and why.
    Raises StoreOutage when every fetched blob failed because the store is unreachable.
    """
    out: list[Submission] = []
    fetched = down = 0
    for entry in market.round_entries(job_id, round_):
        trainer, rev, order = entry.trainer, entry.reveal, entry.commit_order
        if rev is None:
            out.append(Submission(trainer, None, Reason.MISSING, "no reveal this round", order))
            continue
        if (posted_reasons or {}).get(trainer) == Reason.UNAVAILABLE:
            out.append(Submission(trainer, None, Reason.UNAVAILABLE, "as posted on chain", order))
            continue
        got = fetch_reveal(store, rev, policy)
        fetched += 1
        down += int(got.store_down)
        out.append(Submission(trainer, got.blob, got.reason, got.detail, order))
    if fetched and down == fetched:
        raise StoreOutage(f"job {job_id} round {round_}: the store is unreachable for every update")
    return out
