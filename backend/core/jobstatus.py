"""A job's status and a round's phase, as the contract numbers them (FedMarket.sol)."""

from __future__ import annotations

from enum import IntEnum


class JobStatus(IntEnum):
    NONE = 0
    CREATED = 1
    RUNNING = 2
    FINISHED = 3
    SETTLED = 4
    ABANDONED = 5
    CANCELLED = 6

    @property
    def meaning(self) -> str:
        """What the status means to a user, in a few words."""
        return _STATUS_MEANING[self]

    @property
    def label(self) -> str:
        """The lowercase name the API, the indexer and the CLI show, e.g. `settled`."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> JobStatus:
        """The status whose `label` is `label`; ValueError for an unknown one."""
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown job status {label!r}") from None


class Phase(IntEnum):
    NONE = 0
    COMMIT = 1
    REVEAL = 2
    AWAITING_POST = 3
    OVERDUE = 4


_STATUS_MEANING = {
    JobStatus.NONE: "does not exist",
    JobStatus.CREATED: "open for joining (not started yet)",
    JobStatus.RUNNING: "running (rounds are being trained and posted)",
    JobStatus.FINISHED: "finished (every round posted) but not finalized yet",
    JobStatus.SETTLED: "finalized (rewards claimable)",
    JobStatus.ABANDONED: "abandoned (the aggregator missed a deadline)",
    JobStatus.CANCELLED: "cancelled before it started",
}
