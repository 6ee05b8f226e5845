"""The validation package: what a job's owner keeps, and hands to its aggregator, to score and
reveal the job's per-round validation chunks (pure: bytes in, bytes out).

One `.npz` file with four arrays:

    x      float32 (n, features)   the whole validation split, as `to_npz_bytes` writes it
    y      int64 (n,)
    salts  uint8 (rounds, 32)       chunk r's secret salt at index r-1
    cids   unicode (rounds,)        chunk r's CID at index r-1 (predicted by the owner's store)

Chunk r is `split_chunks(Dataset(x, y), rounds)[r-1]`, its file `to_npz_bytes(chunk)`; the job's
`validationRoot` is the Merkle root over `chunk_leaf(r, sha256(file), cid, salt)` (see
`backend.core.valchunks`). Anything that reads `.npz` data files (x, y) reads a package as the
plain validation split; a plain split without `salts` and `cids` still scores rounds, but cannot
reveal chunks or be checked against the root.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from backend.core.datasets import Dataset, from_npz_bytes, to_npz_bytes
from backend.core.errors import DataError
from backend.core.valchunks import MerkleTree, chunk_leaf, new_salts, split_chunks

__all__ = ["ChunkReveal", "ValidationPackage", "build_package", "read_validation"]


def canonical(data: Dataset) -> Dataset:
    """`data` with the dtypes a data file is read back with (float32 x, int64 y), so a chunk
    re-encoded from a saved package has the very bytes the owner committed to."""
    return Dataset(
        np.ascontiguousarray(data.x, dtype=np.float32), np.ascontiguousarray(data.y, dtype=np.int64)
    )


@dataclass(frozen=True)
class ChunkReveal:
    """What `revealValidationChunk` takes for one round, plus the chunk file to publish first."""

    round: int
    blob: bytes
    content_hash: bytes
    cid: str
    salt: bytes
    proof: list[bytes]


@dataclass(frozen=True, eq=False)  # arrays: == would be ambiguous
class ValidationPackage:
    """A validation split with the salts and CIDs of its per-round chunks."""

    data: Dataset
    salts: tuple[bytes, ...]
    cids: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.salts) != len(self.cids) or not self.salts:
            raise DataError(
                f"a validation package needs one salt and one CID per round "
                f"({len(self.salts)} salts, {len(self.cids)} CIDs)"
            )
        if any(len(s) != 32 for s in self.salts):
            raise DataError("a validation package's salts must be 32 bytes each")

    @property
    def rounds(self) -> int:
        return len(self.salts)

    @cached_property
    def chunks(self) -> list[Dataset]:
        """Chunk r at index r-1."""
        try:
            return split_chunks(self.data, self.rounds)
        except ValueError as exc:
            raise DataError(str(exc)) from None

    @cached_property
    def chunk_blobs(self) -> list[bytes]:
        return [to_npz_bytes(c) for c in self.chunks]

    @cached_property
    def tree(self) -> MerkleTree:
        leaves = [
            chunk_leaf(r, hashlib.sha256(blob).digest(), cid, salt)
            for r, (blob, cid, salt) in enumerate(
                zip(self.chunk_blobs, self.cids, self.salts, strict=True), start=1
            )
        ]
        return MerkleTree(leaves)

    @property
    def root(self) -> bytes:
        """The job's `validationRoot`."""
        return self.tree.root

    def chunk(self, round_: int) -> Dataset:
        self._check_round(round_)
        return self.chunks[round_ - 1]

    def reveal(self, round_: int) -> ChunkReveal:
        """Round `round_`'s chunk file and the arguments of its on-chain reveal."""
        self._check_round(round_)
        blob = self.chunk_blobs[round_ - 1]
        return ChunkReveal(
            round_,
            blob,
            hashlib.sha256(blob).digest(),
            self.cids[round_ - 1],
            self.salts[round_ - 1],
            self.tree.proof(round_ - 1),
        )

    def _check_round(self, round_: int) -> None:
        if not 1 <= round_ <= self.rounds:
            raise DataError(f"round {round_} is outside the package's 1..{self.rounds}")

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            x=self.data.x,
            y=self.data.y,
            salts=np.frombuffer(b"".join(self.salts), dtype=np.uint8).reshape(self.rounds, 32),
            cids=np.array(self.cids, dtype=np.str_),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> ValidationPackage:
        """A package file; a DataError if it is not one (a plain x, y file included)."""
        found = read_validation(blob)
        if not isinstance(found, ValidationPackage):
            raise DataError("a plain validation split (x, y), without the chunks' salts and CIDs")
        return found


def build_package(
    data: Dataset,
    rounds: int,
    cid_of: Callable[[bytes], str],
    salts: Sequence[bytes] | None = None,
) -> ValidationPackage:
    """Cut `data` into `rounds` chunks, name each with `cid_of(file)` (the CID the store will
    give it) and draw fresh salts (unless `salts` are given)."""
    data = canonical(data)
    try:
        chunks = split_chunks(data, rounds)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    cids = tuple(cid_of(to_npz_bytes(c)) for c in chunks)
    return ValidationPackage(data, tuple(salts or new_salts(rounds)), cids)


def read_validation(blob: bytes) -> Dataset | ValidationPackage:
    """A validation file's content: a package when it carries salts and CIDs, else the plain
    split. A DataError for an unreadable file or half a package."""
    data = from_npz_bytes(blob)
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            files = set(z.files)
            if not files & {"salts", "cids"}:
                return data
            if not {"salts", "cids"} <= files:
                raise DataError("a validation package needs both arrays 'salts' and 'cids'")
            salts = np.asarray(z["salts"])
            cids = np.asarray(z["cids"])
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"not a readable validation package ({exc})") from None
    if salts.dtype != np.uint8 or salts.ndim != 2 or salts.shape[1] != 32:
        raise DataError("a validation package's 'salts' must be uint8 of shape (rounds, 32)")
    if cids.dtype.kind != "U" or cids.shape != (salts.shape[0],):
        raise DataError("a validation package's 'cids' must be one string per round")
    return ValidationPackage(data, tuple(bytes(row) for row in salts), tuple(str(c) for c in cids))
