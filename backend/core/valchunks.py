"""Per-round validation chunks and their Merkle commitment (pure: no I/O).

A job's validation split is cut into one chunk per round. Round r is scored on chunk r only, so
the chunks of later rounds stay hidden from trainers while every posted round can be re-run by
anyone once its chunk is revealed. At creation the owner commits to every chunk at once: the
root of an OpenZeppelin-compatible Merkle tree (sorted-pair keccak) over the leaves

    keccak256(keccak256(abi.encode(uint32 round, bytes32 sha256(chunk), string cid, bytes32 salt)))

`FedMarket.revealValidationChunk` checks a leaf and its proof against that root. The secret
per-chunk salt stops anyone from brute-forcing a chunk (e.g. the seed of a public split) from
the commitment before its reveal.
"""

from __future__ import annotations

import secrets

import numpy as np
from eth_abi import encode as abi_encode
from eth_utils import keccak

from backend.core.datasets import Dataset

__all__ = ["MerkleTree", "chunk_leaf", "chunk_rows", "new_salts", "split_chunks", "verify"]


def chunk_rows(n_rows: int, rounds: int, round_: int) -> np.ndarray:
    """Row indices of round `round_`'s chunk (1-based): every `rounds`-th row from `round_-1`."""
    if not 1 <= round_ <= rounds:
        raise ValueError(f"round {round_} is outside 1..{rounds}")
    return np.arange(round_ - 1, n_rows, rounds)


def split_chunks(data: Dataset, rounds: int) -> list[Dataset]:
    """The validation split cut into `rounds` disjoint chunks (round r is index r-1)."""
    if len(data.y) < rounds:
        raise ValueError(
            f"the validation split has {len(data.y)} rows: too few for {rounds} rounds "
            "(one chunk per round needs at least one row each)"
        )
    out = []
    for r in range(1, rounds + 1):
        rows = chunk_rows(len(data.y), rounds, r)
        out.append(Dataset(data.x[rows], data.y[rows]))
    return out


def new_salts(rounds: int) -> list[bytes]:
    """One secret 32-byte salt per chunk."""
    return [secrets.token_bytes(32) for _ in range(rounds)]


def chunk_leaf(round_: int, content_hash: bytes, cid: str, salt: bytes) -> bytes:
    """The Merkle leaf of one chunk, as `FedMarket.revealValidationChunk` computes it."""
    inner = keccak(
        abi_encode(["uint32", "bytes32", "string", "bytes32"], [round_, content_hash, cid, salt])
    )
    return keccak(inner)


def _pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative keccak of two nodes (sorted, so proofs need no sides)."""
    return keccak(a + b) if a < b else keccak(b + a)


class MerkleTree:
    """A Merkle tree over leaves in round order; odd nodes are carried up unpaired."""

    def __init__(self, leaves: list[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        self.layers: list[list[bytes]] = [list(leaves)]
        while len(self.layers[-1]) > 1:
            layer = self.layers[-1]
            up = [
                _pair(layer[i], layer[i + 1]) if i + 1 < len(layer) else layer[i]
                for i in range(0, len(layer), 2)
            ]
            self.layers.append(up)

    @property
    def root(self) -> bytes:
        return self.layers[-1][0]

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from leaf `index` up to the root."""
        out = []
        for layer in self.layers[:-1]:
            sibling = index ^ 1
            if sibling < len(layer):
                out.append(layer[sibling])
            index //= 2
        return out


def verify(proof: list[bytes], root: bytes, leaf: bytes) -> bool:
    """What OpenZeppelin's MerkleProof.verify computes."""
    node = leaf
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root
