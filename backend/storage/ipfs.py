"""`IpfsStore`: a real IPFS daemon through its Kubo RPC API (ipfshttpclient)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from backend.core.errors import ContentNotFound, StorageUnavailable
from backend.storage.base import Transfer, iter_chunks

T = TypeVar("T")

# What `add` asks for: CIDv1 over raw leaves, the same `bafkrei…` form `raw_cid` computes for
# blobs that fit one block.
_ADD_OPTIONS = {"cid-version": 1, "raw-leaves": True}


class IpfsStore:
    """A real IPFS daemon speaking the Kubo RPC API. Everything the market stores is pinned.

    Connection failures are retried with exponential backoff; if the daemon stays down the
    caller gets StorageUnavailable naming the address.
    """

    def __init__(
        self, api: str, *, retries: int = 4, backoff_s: float = 0.5, timeout_s: float = 60.0
    ) -> None:
        self.api = api
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._client: Any = None

    def _connect(self) -> Any:
        import warnings

        import ipfshttpclient

        if self._client is None:
            with warnings.catch_warnings():
                # js-ipfs / newer Kubo report versions the 0.8 client does not list; it still works.
                warnings.simplefilter("ignore")
                self._client = ipfshttpclient.connect(self.api, timeout=self.timeout_s)
        return self._client

    def retrying(self, what: str, op: Callable[[Any], T]) -> T:
        """Run `op(client)`, reconnecting and retrying with backoff while the daemon cannot be
        reached; StorageUnavailable (naming `what`) once the retries are spent."""
        import ipfshttpclient.exceptions as ipfs_errors

        delay = self.backoff_s
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                return op(self._connect())
            except (
                ipfs_errors.ConnectionError,
                ipfs_errors.TimeoutError,
                ConnectionError,
                OSError,
            ) as exc:
                last = exc
                self._client = None
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
        raise StorageUnavailable(
            f"IPFS daemon at {self.api} is unreachable ({what} failed after "
            f"{self.retries + 1} attempts: {last}); is it running? try `fedmarket devnet status`"
        )

    def put(self, data: bytes, progress: Transfer | None = None) -> str:
        def op(client: Any) -> Any:
            # A generator body is streamed chunk by chunk: progress follows the upload itself.
            body = iter_chunks(data, progress) if progress is not None else data
            cid = client.add_bytes(body, opts=dict(_ADD_OPTIONS))
            client.pin.add(cid)
            return cid

        return str(self.retrying("add", op))

    def cid_of(self, data: bytes) -> str:
        """The CID `put(data)` would return, computed by the daemon without storing anything."""

        def op(client: Any) -> str:
            return str(client.add_bytes(data, opts={**_ADD_OPTIONS, "only-hash": True}))

        return str(self.retrying("add --only-hash", op))

    def get(self, cid: str, progress: Transfer | None = None) -> bytes:
        import ipfshttpclient.exceptions as ipfs_errors

        def op(client: Any) -> bytes:
            try:
                if progress is None:
                    return bytes(client.cat(cid, timeout=self.timeout_s))
                parts, done = [], 0
                for chunk in client.cat(cid, stream=True, timeout=self.timeout_s):
                    parts.append(chunk)
                    done += len(chunk)
                    progress(done, None)
                return b"".join(parts)
            except ipfs_errors.ErrorResponse as exc:
                raise ContentNotFound(
                    f"IPFS daemon at {self.api} has no content {cid}: {exc}"
                ) from exc

        return bytes(self.retrying("cat", op))

    def has(self, cid: str) -> bool:
        try:
            self.get(cid)
        except ContentNotFound:
            return False
        return True

    def __repr__(self) -> str:
        return f"IpfsStore({self.api!r})"
