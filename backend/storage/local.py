"""`LocalStore`: a directory of blobs keyed by a CIDv1 (raw codec, sha2-256) of their bytes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from backend.core.errors import ContentNotFound
from backend.storage.base import CHUNK, Transfer, iter_chunks, raw_cid


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
                    for chunk in iter_chunks(data, progress):
                        fh.write(chunk)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        elif progress is not None:
            progress(len(data), len(data))
        return cid

    def cid_of(self, data: bytes) -> str:
        return raw_cid(data)

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
