"""Sealed updates: what a trainer publishes during the commit phase, unreadable until its reveal.

A trainer stores its update *sealed* right after its commitment is mined, and the aggregator
takes a snapshot of the sealed updates in a grace after the commit phase closes, before any
honest trainer reveals (`aggregator.round.gather.SealedSnapshot`). The reveal then only
discloses the key. So whether an update is available is settled while every honest update is
still sealed: nobody can read them first and then decide to withhold its own (the free option
of reason 2, issue 14).

The key is the update's sha256 (its `contentHash`, hidden by the commitment and disclosed by
the reveal event), stretched into a keystream by SHAKE-256; sealing is XOR with it. The
plaintext's integrity comes from the revealed sha256, not from the cipher. A sealed update
reveals its length and, to someone who can guess the exact bytes, that guess (the key is a
hash of the content): a trainer who sends a public update (a replay, zeros) may be recognised
before its reveal; private updates cannot be guessed.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["open_sealed", "seal", "unseal_verified"]

_DOMAIN = b"fedmarket/sealed-update/v1"


def _keystream(content_hash: bytes, n: int) -> np.ndarray:
    return np.frombuffer(hashlib.shake_256(_DOMAIN + content_hash).digest(n), dtype=np.uint8)


def seal(blob: bytes) -> bytes:
    """`blob` sealed under its own sha256; `open_sealed(sealed, sha256(blob))` gives it back."""
    key = hashlib.sha256(blob).digest()
    data = np.frombuffer(blob, dtype=np.uint8)
    return (data ^ _keystream(key, len(blob))).tobytes()


def open_sealed(sealed: bytes, content_hash: bytes) -> bytes:
    """The update sealed in `sealed`, given its revealed sha256; the caller checks that the
    result hashes to `content_hash` (a wrong key or tampered bytes give garbage)."""
    data = np.frombuffer(sealed, dtype=np.uint8)
    return (data ^ _keystream(content_hash, len(sealed))).tobytes()


def unseal_verified(blob: bytes, content_hash: bytes) -> bytes | None:
    """The update a stored blob carries, checked against its revealed sha256: the blob itself
    if it is the update in plain (published at reveal, as before sealing), else the blob
    opened; None if neither hashes to `content_hash`."""
    if hashlib.sha256(blob).digest() == content_hash:
        return blob
    opened = open_sealed(blob, content_hash)
    return opened if hashlib.sha256(opened).digest() == content_hash else None
