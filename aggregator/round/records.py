"""The round's inputs and results: what each participant submitted and what the round decided."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.core.codec import Tensors
from backend.core.errors import Reason
from backend.core.privacy import PrivacyClaim

__all__ = ["PublicUpdates", "RoundOutcome", "Submission", "TrainerOutcome"]


@dataclass(frozen=True)
class Submission:
    """A participant's input to a round, as the aggregator (or an auditor) obtained it."""

    trainer: str
    blob: bytes | None = None  # None: not revealed, or not obtainable
    reason: Reason = Reason.ACCEPTED  # a reason found while obtaining it (missing, unavailable…)
    detail: str = ""
    commit_order: int = 0  # position of its commit on chain (copy detection: earlier = original)


@dataclass(frozen=True, eq=False)  # arrays: == would be ambiguous
class PublicUpdates:
    """Updates public before a round: rows, who sent each, and which may be copied from.

    ``blocks``: the rows, as the blocks they were decoded in (one per round, plus the
    momentum's row); a single matrix is one block. Never concatenated: with a thousand
    trainers each round's rows are hundreds of MB. ``owners`` None: unknown (copy detection
    then uses the job's fixed cosine). ``sources`` None: every row. A row flagged in its own
    round (a copy itself) is no source: comparing with it would let a copier of A's update
    make A's next update look like a replay.
    """

    blocks: tuple[np.ndarray, ...]  # each (m_k, d); a bare (m, d) array is taken as one block
    owners: tuple[str, ...] | None = None
    sources: np.ndarray | None = None  # (m,) bool

    def __post_init__(self) -> None:
        if isinstance(self.blocks, np.ndarray):
            object.__setattr__(self, "blocks", (self.blocks,))
        m = self.count
        if self.owners is not None and len(self.owners) != m:
            raise ValueError(f"{len(self.owners)} owners for {m} public updates")
        if self.sources is not None and self.sources.shape != (m,):
            raise ValueError(f"sources must have shape ({m},)")

    @property
    def count(self) -> int:
        """How many public rows there are, over all blocks."""
        return sum(block.shape[0] for block in self.blocks)

    def with_row(self, row: np.ndarray, owner: str) -> PublicUpdates:
        """These updates and one more row (a source), as one more block: nothing copied."""
        dtype = self.blocks[0].dtype if self.blocks else row.dtype
        owners = None if self.owners is None else (*self.owners, owner)
        sources = np.ones(self.count, dtype=bool) if self.sources is None else self.sources
        return PublicUpdates(
            (*self.blocks, row.reshape(1, -1).astype(dtype)), owners, np.append(sources, True)
        )


@dataclass(frozen=True)
class TrainerOutcome:
    """One participant's result: reason code, why, score (float and fixed point), update norm,
    and the privacy claim its update carried (None: none, or no decodable update)."""

    trainer: str
    reason: Reason
    detail: str
    score: float
    score_fp: int
    update_norm: float
    privacy: PrivacyClaim | None = None

    @property
    def epsilon(self) -> float | None:
        """The cumulative ε the trainer claims after this round (None: no claim)."""
        return None if self.privacy is None else self.privacy.epsilon


@dataclass
class RoundOutcome:
    """Everything a round decides, plus what later rounds carry (accepted updates, momentum)."""

    outcomes: list[TrainerOutcome]  # in the order of the submissions given (participant order)
    next_weights: Tensors
    next_model_blob: bytes
    loss_before: float
    loss_after: float
    accuracy_after: float
    accepted_updates: np.ndarray  # (k, d) float32: every decodable update, for later rounds
    momentum: np.ndarray | None = None
    update_owners: tuple[str, ...] = ()  # who sent each row of accepted_updates

    @property
    def scores_fp(self) -> list[int]:
        """Fixed-point scores as posted on chain, in participant order."""
        return [o.score_fp for o in self.outcomes]

    @property
    def reasons(self) -> list[int]:
        """Reason codes as posted on chain, in participant order."""
        return [int(o.reason) for o in self.outcomes]
