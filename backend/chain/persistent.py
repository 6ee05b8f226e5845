"""A persistent embedded chain: the in-process EVM, saved as a journal and rebuilt on open.

`embedded_chain()` lives and dies with its process, so separate command invocations on one
machine (owner, trainers, aggregator) could not share it. `PersistentEmbeddedChain` keeps a
JSON-lines journal next to the settings: a header with the genesis timestamp, then one line per
mined block — ``{"tx": "0x<raw signed tx>", "ts": T}`` or ``{"block": T}`` (a time-travel /
empty block). Opening the file replays the journal into a fresh in-process node with each
block's recorded timestamp, which rebuilds the same state (same addresses, balances, storage).
Nothing is unpickled: the journal is plain JSON of signed transactions.

Several processes may share one file: every request first replays lines other processes have
appended, and sending holds an exclusive lock on ``<file>.lock`` (fcntl) while it syncs, mines
and appends. It is a single-machine dev chain; use a JSON-RPC node (anvil, a testnet) to share a
chain between machines.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from web3 import Web3

from backend.chain.embedded import EmbeddedChain
from backend.chain.revm_node import RevmNode, RevmProvider
from backend.core.errors import ConfigError

JOURNAL_VERSION = 1


class PersistentEmbeddedChain(EmbeddedChain):
    """An `EmbeddedChain` whose state persists in a journal file (see the module docstring)."""

    def __init__(self, path: Path, w3: Web3, node: RevmNode) -> None:
        super().__init__(w3, node)
        self.path = Path(path)
        self._offset = 0  # bytes of the journal already applied
        self._replaying = False

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str) -> PersistentEmbeddedChain:
        """Open (or create) the chain stored at `path` and replay its journal."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            if not path.exists() or path.stat().st_size == 0:
                header = {"fedmarket_devchain": JOURNAL_VERSION, "genesis_ts": int(time.time())}
                with path.open("a") as fh:
                    fh.write(json.dumps(header) + "\n")
        with path.open("rb") as fh:
            first = fh.readline()
        try:
            header = json.loads(first)
            genesis_ts = int(header["genesis_ts"])
            if header.get("fedmarket_devchain") != JOURNAL_VERSION:
                raise ValueError("unknown journal version")
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path} is not a fedmarket dev-chain journal") from None
        node = RevmNode(genesis_ts)
        holder: dict[str, PersistentEmbeddedChain] = {}
        w3 = Web3(_SyncingProvider(node, holder))
        chain = cls(path, w3, node)
        holder["chain"] = chain
        chain._offset = len(first)
        chain.sync()
        return chain

    @property
    def node(self) -> RevmNode:
        """The node, caught up with what other processes appended to the journal."""
        self.sync()
        return self._node

    # -- journal --------------------------------------------------------------------------
    def sync(self) -> int:
        """Apply the journal lines appended since the last sync; returns how many."""
        if self._replaying:
            return 0
        size = self.path.stat().st_size
        if size <= self._offset:
            return 0
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(size - self._offset)
        end = chunk.rfind(b"\n") + 1  # only whole lines (a writer may be mid-append)
        applied = 0
        self._replaying = True
        try:
            for line in chunk[:end].splitlines():
                if line.strip():
                    self._apply(json.loads(line))
                    applied += 1
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"cannot replay the dev-chain journal {self.path} ({exc}); "
                "delete it to start a fresh chain"
            ) from None
        finally:
            self._replaying = False
        self._offset += end
        return applied

    def _apply(self, entry: dict[str, Any]) -> None:
        if "tx" in entry:
            self._node.send_raw_transaction(bytes.fromhex(entry["tx"][2:]), int(entry["ts"]))
        elif "block" in entry:
            self._node.mine_empty(int(entry["block"]))
        else:
            raise ConfigError(f"unknown journal entry {sorted(entry)}")

    def _append(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._offset += len(line)

    # -- Chain overrides ------------------------------------------------------------------
    def sending(self) -> AbstractContextManager[None]:
        """Hold the journal's lock, caught up with other processes, around each send."""
        return _synced_lock(self)

    def on_mined(self, raw_tx: bytes, receipt: Any) -> None:
        ts = self.node.blocks[int(receipt["blockNumber"])].timestamp
        self._append({"tx": "0x" + raw_tx.hex(), "ts": ts})

    def advance_time(self, seconds: int) -> int:
        """Move the clock forward by mining one block `seconds` later (journaled)."""
        with _locked(self.path):
            self.sync()
            target = self.now() + int(seconds)
            self._node.mine_empty(target)
            self._append({"block": target})
        return self.now()


@contextmanager
def _synced_lock(chain: PersistentEmbeddedChain) -> Iterator[None]:
    with _locked(chain.path):
        chain.sync()
        yield


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = Path(str(path) + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class _SyncingProvider(RevmProvider):
    """A RevmProvider that first applies other processes' journal lines."""

    def __init__(self, node: RevmNode, holder: dict[str, PersistentEmbeddedChain]) -> None:
        super().__init__(node)
        self.holder = holder

    def make_request(self, method: Any, params: Any) -> Any:
        chain = self.holder.get("chain")
        if chain is not None:
            chain.sync()
        return super().make_request(method, params)


def parse_chain_url(url: str | None) -> Path | None:
    """The journal path of an ``embedded:<path>`` URL (None for anything else)."""
    if url and url.startswith("embedded:"):
        rest = url[len("embedded:") :]
        if not rest:
            raise ConfigError("FEDMARKET_RPC_URL=embedded:<path> needs a journal file path")
        return Path(rest).expanduser()
    return None
