"""Content-addressed storage behind one small interface, with a local and an IPFS (Kubo RPC)
implementation and verified reads.

May import: `backend.core`.
"""

from backend.storage.base import (
    CHUNK,
    ContentStore,
    Transfer,
    fetch_verified,
    iter_chunks,
    raw_cid,
    sha256_bytes,
)
from backend.storage.factory import open_store
from backend.storage.ipfs import IpfsStore
from backend.storage.local import LocalStore

__all__ = [
    "CHUNK",
    "ContentStore",
    "IpfsStore",
    "LocalStore",
    "Transfer",
    "fetch_verified",
    "iter_chunks",
    "open_store",
    "raw_cid",
    "sha256_bytes",
]
