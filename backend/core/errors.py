"""The project's own errors: one hierarchy, each with a message a user can act on."""

from __future__ import annotations

from enum import IntEnum


class Reason(IntEnum):
    """Why an update was not accepted. Stable codes: posted on chain, read by auditors."""

    ACCEPTED = 0
    MISSING = 1  # no reveal (or a late one) this round
    UNAVAILABLE = 2  # content could not be fetched from storage
    HASH_MISMATCH = 3  # content does not match its on-chain sha256
    UNDECODABLE = 4  # not a valid safetensors blob
    WRONG_SHAPE = 5  # wrong tensor names, shapes or dtypes
    NON_FINITE = 6  # NaN or Inf values
    TOO_LARGE = 7  # blob above the job's size limit
    OUTLIER = 8  # flagged by the job's robust rule
    COPY = 9  # copy (or scaled copy) of another update this round
    REPLAY = 10  # replay of an earlier round's update
    NEAR_ZERO = 11  # near-zero update (free rider)

    @property
    def slashable(self) -> bool:
        """Reasons 3..11 are proven by public artifacts; 1 and 2 only cost the round's score."""
        return self >= Reason.HASH_MISMATCH

    @property
    def is_absence(self) -> bool:
        """Reasons 1 and 2: the update was not there to judge (not revealed, not fetchable)."""
        return self in (Reason.MISSING, Reason.UNAVAILABLE)

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def absence_codes(cls) -> frozenset[Reason]:
        """Every reason that means "missing" in a round's tally."""
        return frozenset(r for r in cls if r.is_absence)

    @classmethod
    def slashable_codes(cls) -> frozenset[Reason]:
        """Every reason that flags an update (and slashes its trainer)."""
        return frozenset(r for r in cls if r.slashable)

    @classmethod
    def label_of(cls, code: int | None) -> str | None:
        """The label of a raw code as read from the chain; `unknown-N` for one not defined."""
        if code is None:
            return None
        try:
            return cls(code).label
        except ValueError:
            return f"unknown-{code}"


class FedMarketError(Exception):
    """Base class of every error fedmarket raises on purpose."""


class ConfigError(FedMarketError):
    """The settings are incomplete or inconsistent."""


class ContractRevert(FedMarketError):
    """A contract call reverted. `error` is the Solidity custom error's name (or 'Revert').

    `explanation` is what the revert means to the user (the chain layer writes it); the raw
    error follows it in the message, so scripts and searches still find it.
    """

    def __init__(
        self,
        function: str,
        error: str,
        args: dict[str, object] | None = None,
        *,
        explanation: str | None = None,
    ) -> None:
        self.function = function
        self.error = error
        self.args_ = dict(args or {})
        self.explanation = explanation
        shown = ", ".join(f"{k}={_short(v)}" for k, v in self.args_.items())
        raw = f"{function} reverted: {error}({shown})"
        super().__init__(f"{explanation} [{raw}]" if explanation else raw)


class InsufficientFunds(FedMarketError):
    """The sender cannot pay a transaction's value plus its gas."""


class ChainUnavailable(FedMarketError):
    """The JSON-RPC node could not be reached."""


class StorageError(FedMarketError):
    """Base class of content-store errors."""


class ContentNotFound(StorageError):
    """The store does not have the requested content."""


class ContentMismatch(StorageError):
    """Downloaded content does not match the hash it was announced with."""


class StorageUnavailable(StorageError):
    """The storage daemon could not be reached, even after retries."""


class UpdateRejected(FedMarketError):
    """An update failed validation; `reason` is the on-chain reason code."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.label}: {detail}")


class DataError(FedMarketError):
    """A trainer's or owner's data file does not fit the job."""


def _short(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
