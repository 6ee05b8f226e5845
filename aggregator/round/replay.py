"""The one replay: walk a job's posted rounds and recompute each from chain + store.

Used by the aggregator's driver (to rebuild its history and momentum after a restart) and by
the auditor (to verify every round). Each round is recomputed with `compute_round` from the
model the previous post named, the submissions `gather` builds and the carried history and
momentum, exactly as an uninterrupted aggregator computed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from aggregator.round.compute import compute_round
from aggregator.round.gather import FetchPolicy, gather
from aggregator.round.records import PublicUpdates, RoundOutcome
from backend.chain.market import MarketClient, RoundPost
from backend.core.datasets import Dataset
from backend.core.errors import FedMarketError, Reason
from backend.core.jobspec import JobSpec
from backend.protocol.fetch import fetch_weights
from backend.storage import ContentStore, sha256_bytes

__all__ = [
    "HISTORY_ROUNDS",
    "InputModelUnavailable",
    "PublicRound",
    "ReplayedRound",
    "previous_updates",
    "public_round",
    "replay",
]

#: How many earlier rounds' accepted updates replay detection compares with.
HISTORY_ROUNDS = 3


#: One earlier round's revealed updates, who sent each and which were accepted.
PublicRound = PublicUpdates


def public_round(outcome: RoundOutcome) -> PublicRound:
    """What a round makes public for the rounds after it."""
    reason = {o.trainer.lower(): o.reason for o in outcome.outcomes}
    owners = outcome.update_owners
    accepted = np.array([reason[o.lower()] == Reason.ACCEPTED for o in owners], dtype=bool)
    return PublicUpdates(outcome.accepted_updates, owners, accepted)


def previous_updates(history: Sequence[PublicRound]) -> PublicUpdates | None:
    """The last `HISTORY_ROUNDS` rounds' public updates in one (None before any)."""
    recent = history[-HISTORY_ROUNDS:]
    if not recent:
        return None
    return PublicUpdates(
        tuple(block for r in recent for block in r.blocks),  # no copy of the rows
        tuple(o for r in recent for o in (r.owners or ())),
        np.concatenate([r.sources for r in recent if r.sources is not None]),
    )


@dataclass
class ReplayedRound:
    """A posted round recomputed from chain + store."""

    post: RoundPost
    outcome: RoundOutcome
    matches: bool  # recomputed model hash, reasons and scores equal what was posted
    model_hash: bytes = b""  # sha256 of the recomputed next model


class InputModelUnavailable(FedMarketError):
    """The model a round started from (named by the previous post) cannot be fetched."""

    def __init__(self, post: RoundPost, model_hash: bytes, cause: Exception) -> None:
        super().__init__(f"round {post.round}: input model 0x{model_hash.hex()}: {cause}")
        self.post = post
        self.model_hash = model_hash
        self.cause = cause


def replay(
    market: MarketClient,
    store: ContentStore,
    spec: JobSpec,
    job_id: int,
    validation: Dataset | Callable[[int], Dataset],
    policy: FetchPolicy = FetchPolicy(),
    posts: Sequence[RoundPost] | None = None,
) -> Iterator[ReplayedRound]:
    """Recompute every posted round (or `posts`) in order, carrying history and momentum.

    `validation` is the split every round is scored on, or a function of the round number
    giving that round's own (the job's per-round validation chunk).

    Raises InputModelUnavailable when a round's input model cannot be fetched (nothing after
    it can be recomputed), StoreOutage as `gather` does.
    """
    participants = market.participants(job_id)
    params = market.job_created(job_id)["params"]
    model = (bytes(params["initialModelHash"]), str(params["initialModelCid"]))
    history: list[PublicRound] = []
    momentum: np.ndarray | None = None
    for post in market.round_posts(job_id) if posts is None else posts:
        try:
            weights = fetch_weights(store, spec, *model)
        except FedMarketError as exc:
            raise InputModelUnavailable(post, model[0], exc) from exc
        posted = dict(zip(participants, post.reasons, strict=False))
        submissions = gather(market, store, job_id, post.round, posted, policy)
        data = validation(post.round) if callable(validation) else validation
        outcome = compute_round(
            spec, weights, submissions, data, previous_updates(history), momentum
        )
        model_hash = sha256_bytes(outcome.next_model_blob)
        matches = (
            model_hash == post.model_hash
            and outcome.reasons == list(post.reasons)
            and outcome.scores_fp == list(post.scores)
        )
        history.append(public_round(outcome))
        momentum = outcome.momentum
        yield ReplayedRound(post, outcome, matches, model_hash)
        model = (post.model_hash, post.model_cid)
