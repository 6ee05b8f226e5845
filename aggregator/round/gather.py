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
  round cannot be judged at all and `StoreOutage` is raised instead;
* with the live aggregator's snapshot (`SealedSnapshot`, taken when the commit phase closed):
  an update that was not in it → UNAVAILABLE, even if it is in the store now. That is what
  prices withholding: availability is settled while every update is still sealed, so nobody
  decides to publish after reading the others (`backend.core.sealing`).

The stored content may be the update sealed (what trainers publish) or in plain; either must
hash to the revealed sha256 once opened (`unseal_verified`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from aggregator.round.records import Submission
from backend.chain.market import JobInfo, MarketClient, Phase, Reveal, snapshot_grace
from backend.core.errors import ContentNotFound, Reason, StorageUnavailable
from backend.core.sealing import unseal_verified
from backend.storage import ContentStore, Transfer

__all__ = ["FetchPolicy", "Fetched", "SealedSnapshot", "StoreOutage", "fetch_reveal", "gather"]


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


def fetch_reveal(
    store: ContentStore, reveal: Reveal, policy: FetchPolicy, max_bytes: int | None = None
) -> Fetched:
    """Fetch and verify one revealed update, retried up to the policy's timeout.

    A hash mismatch is final at once; missing content and an unreachable store are retried
    until `policy.timeout_s`, then the update is marked UNAVAILABLE (not slashable). With
    `max_bytes` the read stops past it (TOO_LARGE): for readers that only need a header.
    """
    deadline = time.monotonic() + policy.timeout_s
    while True:
        try:
            return opened(store.get(reveal.cid, _capped_at(max_bytes)), reveal)
        except _TooLarge:
            return Fetched(
                None, Reason.TOO_LARGE, f"content {reveal.cid} exceeds {max_bytes} bytes"
            )
        except (ContentNotFound, StorageUnavailable) as exc:
            down = isinstance(exc, StorageUnavailable)
            if down and policy.strict:
                raise
            if time.monotonic() >= deadline:
                what = "store unreachable" if down else "content not found"
                detail = f"{what} after {policy.timeout_s:g}s: {exc}"
                return Fetched(None, Reason.UNAVAILABLE, detail, down)
            time.sleep(min(policy.retry_s, max(0.0, deadline - time.monotonic())))


def opened(blob: bytes, reveal: Reveal) -> Fetched:
    """A stored blob as the revealed update (sealed or plain), or HASH_MISMATCH."""
    update = unseal_verified(blob, reveal.content_hash)
    if update is None:
        detail = (
            f"content {reveal.cid} is neither the update with sha256 "
            f"0x{reveal.content_hash.hex()} nor that update sealed"
        )
        return Fetched(None, Reason.HASH_MISMATCH, detail)
    return Fetched(update, Reason.ACCEPTED, "")


_FETCHERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sealed-snapshot")
_PREFETCH_WAIT_S = 5.0


class _TooLarge(Exception):
    pass


def _capped_at(max_bytes: int | None) -> Transfer | None:
    """A progress hook that stops a read past `max_bytes` (None: no cap)."""
    if max_bytes is None:
        return None

    def cap(done: int, _total: int | None) -> None:
        if done > max_bytes:
            raise _TooLarge

    return cap


def _fetch_capped(store: ContentStore, cid: str, max_bytes: int) -> bytes | Exception | None:
    """The blob under `cid`, or None if it is missing or larger than `max_bytes` (the read
    stops there), or the StorageUnavailable it raised. Runs in a fetcher thread."""

    try:
        return store.get(cid, _capped_at(max_bytes))
    except (ContentNotFound, _TooLarge):
        return None
    except StorageUnavailable as exc:
        return exc


@dataclass
class SealedSnapshot:
    """The sealed updates the aggregator held before anyone could read an honest update.

    `collect` runs while the round's commit phase is open (prefetching) and after it closes,
    until `commitEnd + snapshot_grace`: honest trainers reveal only after that, so until then
    every update the withholder could read is its own or its colluders'. A reveal before it
    (a colluder's) does not end the snapshot; on the embedded chain (grace 0) the first reveal
    does. A fetch that completes after the end is discarded. The snapshot counts (`taken`) only
    if a collect ran after the commit phase closed, before its end, with the store reachable:
    then every announced update had its chance, and one first obtained later is unavailable.
    Without one (an aggregator that was down then) the round falls back to fetching each
    revealed update. What the snapshot holds is stored (pinned) by the aggregator too, so a
    trainer cannot unpublish it before verifiers re-run the round.
    """

    job_id: int
    round: int
    held: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # trainer → (cid, sealed)
    taken: bool = False
    frozen: bool = False
    # fetches still running, kept across collects: a CID that hangs is fetched once, not once
    # per collect (which would fill the fetchers)
    _inflight: dict[str, tuple[str, Future]] = field(default_factory=dict, repr=False)

    def collect(self, market: MarketClient, store: ContentStore, max_bytes: int) -> None:
        """Fetch the announced sealed updates not yet held, concurrently and at most
        `max_bytes` each, waiting no later than the snapshot's end (a CID that exists nowhere
        must not hold the others back); end the snapshot once honest trainers may have revealed
        or the round is over."""
        if self.frozen or self._ended(market):
            self.frozen = True
            return
        closed = market.phase_of(self.job_id) != Phase.COMMIT
        for t, cid in market.announced(self.job_id, self.round).items():
            if t not in self.held and t not in self._inflight:
                self._inflight[t] = (cid, _FETCHERS.submit(_fetch_capped, store, cid, max_bytes))
        wait([f for _, f in self._inflight.values()], timeout=self._wait_s(market, closed))
        unreachable = reached = 0
        for trainer, (cid, future) in list(self._inflight.items()):
            if not future.done():
                unreachable += 1  # still fetching: harvested by a later collect, if in time
                continue
            del self._inflight[trainer]
            got = future.result()
            if isinstance(got, StorageUnavailable):
                unreachable += 1  # the store is down, or this one CID times out
                continue
            reached += 1
            if isinstance(got, bytes):
                self.held[trainer] = (cid, got)
                store.put(got)  # keep it (pin) for the verifiers
        if self._ended(market):
            self.frozen = True  # what was fetched finished within the wait, before the end
        if closed and (not unreachable or reached or self._store_answers(store)):
            self.taken = True

    def _wait_s(self, market: MarketClient, closed: bool) -> float | None:
        """How long this collect waits for its fetches: until the snapshot's end once the commit
        phase is closed (None on the embedded chain, whose end is the first reveal), a few
        seconds while it is open (a prefetch; the next collect harvests the rest)."""
        end = self._end(market)
        if end is None:
            return None
        left = max(0.0, float(end - market.chain.next_block_time()))
        return left if closed else min(_PREFETCH_WAIT_S, left)

    def _store_answers(self, store: ContentStore) -> bool:
        """Whether the store serves what it served before: a CID that times out (an announced
        one that exists nowhere) must not pass for an outage and cancel the snapshot."""
        cid, blob = next(iter(self.held.values()), ("", b""))
        if not cid:
            return False
        probe = _FETCHERS.submit(_fetch_capped, store, cid, len(blob))
        done, _ = wait([probe], timeout=_PREFETCH_WAIT_S)
        return bool(done) and isinstance(probe.result(), bytes)

    def _end(self, market: MarketClient, job: JobInfo | None = None) -> int | None:
        """The chain time the snapshot ends at (`commitEnd + snapshot_grace`); None on the
        embedded chain (grace 0), where the first reveal ends it."""
        job = job or market.job(self.job_id)
        grace = snapshot_grace(market.chain, job)
        return int(job.commitEnd) + grace if grace else None

    def _ended(self, market: MarketClient) -> bool:
        job = market.job(self.job_id)
        if int(job.currentRound) != self.round:
            return True
        end = self._end(market, job)
        if end is None:
            return bool(market.reveals(self.job_id, self.round))
        return market.chain.next_block_time() >= end

    def fetched(self, reveal: Reveal) -> Fetched:
        """The revealed update from the snapshot, or UNAVAILABLE if it was not in it."""
        cid, sealed = self.held.get(reveal.trainer, ("", b""))
        if cid != reveal.cid:
            detail = "not in the store when the commit phase closed (the aggregator's snapshot)"
            return Fetched(None, Reason.UNAVAILABLE, detail)
        return opened(sealed, reveal)


def gather(
    market: MarketClient,
    store: ContentStore,
    job_id: int,
    round_: int,
    posted_reasons: Mapping[str, int] | None = None,
    policy: FetchPolicy = FetchPolicy(),
    snapshot: SealedSnapshot | None = None,
) -> list[Submission]:
    """The round's submissions in participant order, each failure mapped to its reason code.

    `posted_reasons` (trainer → reason posted on chain) is given when replaying a posted round;
    see the module docstring for what is taken from it (UNAVAILABLE only) and why. `snapshot`:
    the live aggregator's, when it took one for this round.
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
        if snapshot is not None and snapshot.taken:
            got = snapshot.fetched(rev)
            out.append(Submission(trainer, got.blob, got.reason, got.detail, order))
            continue
        got = fetch_reveal(store, rev, policy)
        fetched += 1
        down += int(got.store_down)
        out.append(Submission(trainer, got.blob, got.reason, got.detail, order))
    if fetched and down == fetched:
        raise StoreOutage(f"job {job_id} round {round_}: the store is unreachable for every update")
    return out
