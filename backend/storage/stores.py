"""Content-addressed storage behind one small interface, with two implementations.

- `LocalStore`: a directory of blobs keyed by a CIDv1 (raw codec, sha2-256) of their bytes.
- `IpfsStore`: a real IPFS daemon through its Kubo RPC API (ipfshttpclient).

Whatever the backend, callers that know a blob's announced sha256 fetch it through
`fetch_verified`, which rejects content that does not match.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from backend.core.errors import ContentMismatch, ContentNotFound, StorageUnavailable

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


def sha256_bytes(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def raw_cid(data: bytes) -> str:
    """CIDv1 (raw codec, sha2-256 multihash), multibase base32 lower: the `bafkrei…` form."""
    digest = sha256_bytes(data)
    binary = bytes([0x01, _RAW_CODEC, _SHA2_256, len(digest)]) + digest
    return "b" + base64.b32encode(binary).decode("ascii").lower().rstrip("=")


class LocalStore:
    """A content-addressed store on local disk. Writes are atomic (temp file + rename)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)

    def _path(self, cid: str) -> Path:
        if not cid or not cid.isalnum():
            raise ContentNotFound(f"not a content identifier: {cid!r}")
        return self.blobs / cid

    def put(self, data: bytes, progress: Transfer | None = None) -> str:
        cid = raw_cid(data)
        path = self._path(cid)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    for chunk in _chunks(data, progress):
                        fh.write(chunk)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        elif progress is not None:
            progress(len(data), len(data))
        return cid

    def get(self, cid: str, progress: Transfer | None = None) -> bytes:
        path = self._path(cid)
        try:
            if progress is None:
                return path.read_bytes()
            with path.open("rb") as fh:
                total = os.fstat(fh.fileno()).st_size
                parts, done = [], 0
                while chunk := fh.read(CHUNK):
                    parts.append(chunk)
                    done += len(chunk)
                    progress(done, total)
                return b"".join(parts)
        except FileNotFoundError:
            raise ContentNotFound(f"content {cid} is not in the local store {self.root}") from None

    def has(self, cid: str) -> bool:
        try:
            return self._path(cid).exists()
        except ContentNotFound:
            return False

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"


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
        self._client = None

    def _connect(self):
        import warnings

        import ipfshttpclient

        if self._client is None:
            with warnings.catch_warnings():
                # js-ipfs / newer Kubo report versions the 0.8 client does not list; it still works.
                warnings.simplefilter("ignore")
                self._client = ipfshttpclient.connect(self.api, timeout=self.timeout_s)
        return self._client

    def _retrying(self, what: str, op):
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
        def op(client):
            # A generator body is streamed chunk by chunk: progress follows the upload itself.
            body = _chunks(data, progress) if progress is not None else data
            cid = client.add_bytes(body, opts={"cid-version": 1, "raw-leaves": True})
            client.pin.add(cid)
            return cid

        return str(self._retrying("add", op))

    def get(self, cid: str, progress: Transfer | None = None) -> bytes:
        import ipfshttpclient.exceptions as ipfs_errors

        def op(client):
            try:
                if progress is None:
                    return client.cat(cid, timeout=self.timeout_s)
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

        return bytes(self._retrying("cat", op))

    def has(self, cid: str) -> bool:
        try:
            self.get(cid)
        except ContentNotFound:
            return False
        return True

    def __repr__(self) -> str:
        return f"IpfsStore({self.api!r})"


def _chunks(data: bytes, progress: Transfer | None) -> Iterator[bytes]:
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


def open_store(ipfs_api: str | None, store_dir: Path, retries: int = 4) -> ContentStore:
    """The store the settings describe: IPFS when an API address is set, else the local store."""
    if ipfs_api:
        return IpfsStore(ipfs_api, retries=retries)
    return LocalStore(store_dir)
