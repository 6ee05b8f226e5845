"""The content-store interface and what every store shares: content identifiers, sha256 and
verified reads.

Whatever the backend, callers that know a blob's announced sha256 fetch it through
`fetch_verified`, which rejects content that does not match.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

from backend.core.errors import ContentMismatch

_RAW_CODEC = 0x55
_SHA2_256 = 0x12
CHUNK = 256 * 1024

# Transfer progress: (bytes so far, total bytes or None when the store cannot tell in advance).
Transfer = Callable[[int, int | None], None]


@runtime_checkable
class ContentStore(Protocol):
    """Put bytes, get them back by content identifier."""

    def put(self, data: bytes, progress: Transfer | None = None) -> str:
        """Store `data` (and keep it: pinned) and return its content identifier."""
        ...

    def get(self, cid: str, progress: Transfer | None = None) -> bytes:
        """Return the bytes stored under `cid`; raise ContentNotFound if there are none."""
        ...

    def has(self, cid: str) -> bool:
        """Whether the store holds `cid` locally."""
        ...

    def cid_of(self, data: bytes) -> str:
        """The CID `put(data)` would return, storing and publishing nothing (a trainer commits
        to its update's CID before anyone can see the update)."""
        ...


def sha256_bytes(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def raw_cid(data: bytes) -> str:
    """CIDv1 (raw codec, sha2-256 multihash), multibase base32 lower: the `bafkrei…` form."""
    digest = sha256_bytes(data)
    binary = bytes([0x01, _RAW_CODEC, _SHA2_256, len(digest)]) + digest
    return "b" + base64.b32encode(binary).decode("ascii").lower().rstrip("=")


def iter_chunks(data: bytes, progress: Transfer | None) -> Iterator[bytes]:
    """`data` in CHUNK-sized pieces, reporting each one as it is consumed."""
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        chunk = bytes(view[start : start + CHUNK])
        yield chunk
        if progress is not None:
            progress(start + len(chunk), len(data))
    if not data and progress is not None:
        progress(0, 0)


def fetch_verified(
    store: ContentStore, cid: str, sha256: bytes, progress: Transfer | None = None
) -> bytes:
    """Fetch `cid` and check it against the sha256 it was announced with (on chain)."""
    data = store.get(cid, progress)
    actual = sha256_bytes(data)
    if actual != sha256:
        raise ContentMismatch(
            f"content {cid} has sha256 {actual.hex()} but 0x{sha256.hex()} was announced"
        )
    return data
