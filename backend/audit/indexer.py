"""The auditors' indexer: follows FedMarket's, its DisputeCourt's and its
ReliabilityRegistry's events into a relational database.

Every event is stored once in `events`, keyed by (tx_hash, log_index) — so re-indexing a
block range inserts nothing twice — and folded, in the same transaction, into the derived
tables the API reads (jobs, participants, rounds, submissions, slashes, trainers, ...).
A cursor table remembers the last indexed block per contract, so a restarted indexer resumes
where it stopped. SQLite by default; any SQLAlchemy URL works. The tables are in `schema`,
the decoding in `decoding`, and what each event changes in `folding`. The court's and the
registry's addresses are read from the market (`court()`, `reliability()`); all three
contracts' logs are read together, in chain order, under the market's cursor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from web3 import Web3
from web3.exceptions import Web3Exception

from backend.audit.decoding import EventDecoder, hex_of, jsonable
from backend.audit.folding import (
    COURT_FOLDERS,
    FOLDERS,
    MARKET_FOLDERS,
    REGISTRY_FOLDERS,
    LogOrigin,
    dispute_of_event,
)
from backend.audit.schema import cursor_t, events_t, make_engine
from backend.chain.contracts import load_artifact

INDEXED_EVENTS: tuple[str, ...] = tuple(FOLDERS)


@dataclass
class IndexStats:
    """What one indexing run covered: its block range, the logs it read, the events it added."""

    from_block: int
    to_block: int
    logs_seen: int
    inserted: int


class Indexer:
    """Follows one FedMarket contract's events, and its court's and reliability registry's,
    into the database at `db_url`."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        db_url: str | Engine,
        *,
        batch_size: int = 500,
        start_block: int = 0,
        confirmations: int = 0,
    ) -> None:
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.engine = make_engine(db_url) if isinstance(db_url, str) else db_url
        self.batch_size = max(1, int(batch_size))
        self.start_block = start_block
        self.confirmations = max(0, int(confirmations))  # stay this many blocks behind the head
        self.court: str | None = None
        self.registry: str | None = None
        self._decoder = EventDecoder(w3, [("FedMarket", self.address)], MARKET_FOLDERS)
        self._find_court()

    def _find_court(self) -> None:
        """Read the market's reliability registry (set at deployment) and bound DisputeCourt
        (once it is bound), and decode their events too."""
        if self.court is not None:
            return
        abi = load_artifact("FedMarket")["abi"]
        market = self.w3.eth.contract(address=self.address, abi=abi)
        try:
            if self.registry is None:
                registry = str(market.functions.reliability().call())
                self.registry = Web3.to_checksum_address(registry) if int(registry, 16) else None
            court = str(market.functions.court().call())
        except (Web3Exception, ValueError):  # not (yet) a market here: its logs say so
            return
        if int(court, 16) != 0:
            self.court = Web3.to_checksum_address(court)
        sources = [("FedMarket", self.address)]
        folders = [*MARKET_FOLDERS]
        if self.court is not None:
            sources.append(("DisputeCourt", self.court))
            folders += COURT_FOLDERS
        if self.registry is not None:
            sources.append(("ReliabilityRegistry", self.registry))
            folders += REGISTRY_FOLDERS
        self._decoder = EventDecoder(self.w3, sources, folders)

    @property
    def addresses(self) -> list[str]:
        """The contracts whose logs are indexed: the market, its reliability registry and
        (once bound) its court."""
        return [a for a in (self.address, self.registry, self.court) if a is not None]

    # -- cursor ---------------------------------------------------------------------------
    def last_block(self) -> int | None:
        """The last block indexed for this contract, None before the first sync."""
        with self.engine.connect() as conn:
            return self._cursor_in(conn)

    def _cursor_in(self, conn: Connection) -> int | None:
        row = conn.execute(
            select(cursor_t.c.last_block).where(cursor_t.c.contract == self.address)
        ).first()
        return None if row is None else int(row[0])

    def _set_cursor(self, conn: Connection, block: int) -> None:
        exists = conn.execute(
            select(cursor_t.c.contract).where(cursor_t.c.contract == self.address)
        ).first()
        if exists:
            conn.execute(
                cursor_t.update()
                .where(cursor_t.c.contract == self.address)
                .values(last_block=block)
            )
        else:
            conn.execute(cursor_t.insert().values(contract=self.address, last_block=block))

    # -- running --------------------------------------------------------------------------
    def sync(self, to_block: int | None = None) -> IndexStats:
        """Index from the block after the cursor up to `to_block` (default: latest)."""
        last = self.last_block()
        start = self.start_block if last is None else last + 1
        if to_block is None:
            head = int(self.w3.eth.block_number) - self.confirmations
        else:
            head = int(to_block)
        return self.index_range(start, head, move_cursor=True)

    def index_range(
        self, from_block: int, to_block: int, *, move_cursor: bool = False
    ) -> IndexStats:
        """Index [from_block, to_block] in batches; already-stored events are skipped."""
        seen = inserted = 0
        block = from_block
        self._find_court()
        while block <= to_block:
            end = min(block + self.batch_size - 1, to_block)
            logs = self.w3.eth.get_logs(
                {"address": self.addresses, "fromBlock": block, "toBlock": end}
            )
            logs = sorted(logs, key=lambda lg: (int(lg["blockNumber"]), int(lg["logIndex"])))
            with self.engine.begin() as conn:
                for log in logs:
                    seen += 1
                    inserted += self._ingest(conn, log)
                if move_cursor:
                    current = self._cursor_in(conn)
                    if current is None or end > current:
                        self._set_cursor(conn, end)
            block = end + 1
        return IndexStats(from_block, to_block, seen, inserted)

    def _ingest(self, conn: Connection, log: Any) -> int:
        """Store and fold one log; 1 if it was new, 0 if unknown or already stored."""
        event = self._decoder.decode(log)
        if event is None:
            return 0
        origin = LogOrigin(
            block=int(log["blockNumber"]),
            tx=hex_of(log["transactionHash"]),
            log_index=int(log["logIndex"]),
        )
        dup = conn.execute(
            select(events_t.c.id).where(
                events_t.c.tx_hash == origin.tx, events_t.c.log_index == origin.log_index
            )
        ).first()
        if dup is not None:
            return 0
        args = event.args
        trainer = args.get("trainer") or args.get("owner")
        job_id, round_ = args.get("jobId"), args.get("round")
        if job_id is None:  # a court event naming only its dispute
            job_id, round_ = dispute_of_event(conn, args)
        conn.execute(
            events_t.insert().values(
                tx_hash=origin.tx,
                log_index=origin.log_index,
                block_number=origin.block,
                name=event.name,
                job_id=job_id,
                round=round_,
                trainer=Web3.to_checksum_address(trainer) if trainer else None,
                args=json.dumps(jsonable(args), sort_keys=True),
            )
        )
        FOLDERS[event.name](conn, args, origin)
        return 1


def index_market(market: Any, db_url: str, **kw: Any) -> IndexStats:
    """Convenience: bring the database at `db_url` up to date with `market` (a MarketClient)."""
    return Indexer(market.chain.w3, market.address, db_url, **kw).sync()
