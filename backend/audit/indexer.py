"""The auditors' indexer: follows FedMarket's events into a relational database.

Every event is stored once in `events`, keyed by (tx_hash, log_index) — so re-indexing a
block range inserts nothing twice — and folded, in the same transaction, into the derived
tables the API reads (jobs, participants, rounds, submissions, slashes, trainers, ...).
A cursor table remembers the last indexed block per contract, so a restarted indexer resumes
where it stopped. SQLite by default; any SQLAlchemy URL works.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils import event_abi_to_log_topic
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from web3 import Web3
from web3._utils.events import get_event_data

from backend.chain.contracts import load_artifact
from backend.core.errors import ConfigError, Reason

INDEXED_EVENTS = (
    "JobCreated",
    "TrainerJoined",
    "JobStarted",
    "RoundScheduled",
    "UpdateCommitted",
    "UpdateRevealed",
    "RoundPosted",
    "TrainerSlashed",
    "JobFinished",
    "JobFinalized",
    "JobAbandoned",
    "JobCancelled",
    "RewardClaimed",
    "RefundClaimed",
    "ReliabilityUpdated",
    "ValidationRevealed",
    "TrainerRegistered",
    "StakeDeposited",
    "StakeWithdrawn",
)
STATUS_NAMES = {
    0: "none",
    1: "created",
    2: "running",
    3: "finished",
    4: "settled",
    5: "abandoned",
    6: "cancelled",
}

metadata = MetaData()
W = String(80)  # wei amounts (uint96/uint256) as decimal strings: beyond 64-bit integers
A = String(42)  # checksummed addresses
H = String(66)  # 0x-prefixed 32-byte hashes

cursor_t = Table(
    "cursor",
    metadata,
    Column("contract", A, primary_key=True),
    Column("last_block", BigInteger, nullable=False),
)
events_t = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tx_hash", H, nullable=False),
    Column("log_index", Integer, nullable=False),
    Column("block_number", BigInteger, nullable=False, index=True),
    Column("name", String(32), nullable=False, index=True),
    Column("job_id", BigInteger, index=True),
    Column("round", Integer),
    Column("trainer", A, index=True),
    Column("args", Text, nullable=False),
    UniqueConstraint("tx_hash", "log_index", name="uq_event_tx_log"),
)
jobs_t = Table(
    "jobs",
    metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("owner", A, nullable=False, index=True),
    Column("aggregator", A, nullable=False),
    Column("status", Integer, nullable=False, index=True),
    Column("reward_wei", W, nullable=False),
    Column("stake_required_wei", W, nullable=False),
    Column("rounds", Integer, nullable=False),
    Column("posted_rounds", Integer, nullable=False, default=0),
    Column("min_trainers", Integer, nullable=False),
    Column("max_trainers", Integer, nullable=False),
    Column("trainers", Integer, nullable=False, default=0),
    Column("slash_bps", Integer, nullable=False),
    Column("min_reliability_ppm", Integer, nullable=False),
    Column("spec_hash", H, nullable=False),
    Column("spec_cid", Text, nullable=False),
    Column("initial_model_hash", H, nullable=False),
    Column("initial_model_cid", Text, nullable=False),
    Column("model_hash", H, nullable=False),
    Column("model_cid", Text, nullable=False),
    Column("validation_commitment", H, nullable=False),
    Column("validation_hash", H),
    Column("validation_cid", Text),
    Column("slashed_pool_wei", W, nullable=False, default="0"),
    Column("reward_pool_wei", W),
    Column("owner_refund_wei", W),
    Column("total_score", BigInteger),
    Column("refund_claimed", Boolean, nullable=False, default=False),
    Column("created_block", BigInteger, nullable=False),
    Column("created_tx", H, nullable=False),
)
participants_t = Table(
    "participants",
    metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("trainer", A, primary_key=True),
    Column("join_order", Integer, nullable=False),
    Column("locked_stake_wei", W, nullable=False),
    Column("total_score", BigInteger, nullable=False, default=0),
    Column("flagged_rounds", Integer, nullable=False, default=0),
    Column("slashed_wei", W, nullable=False, default="0"),
    Column("reward_wei", W),
    Column("stake_unlocked_wei", W),
    Column("claimed", Boolean, nullable=False, default=False),
    Column("contribution_ppm", Integer),
    Column("reliability_ppm_after", Integer),
)
rounds_t = Table(
    "rounds",
    metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("commit_end", BigInteger),
    Column("reveal_end", BigInteger),
    Column("post_deadline", BigInteger),
    Column("commits", Integer, nullable=False, default=0),
    Column("reveals", Integer, nullable=False, default=0),
    Column("posted", Boolean, nullable=False, default=False),
    Column("model_hash", H),
    Column("model_cid", Text),
    Column("total_score", BigInteger),
    Column("accepted", Integer),
    Column("flagged", Integer),
    Column("missing", Integer),
    Column("posted_block", BigInteger),
    Column("posted_tx", H),
)
submissions_t = Table(
    "submissions",
    metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("trainer", A, primary_key=True),
    Column("commitment", H),
    Column("commit_order", Integer),
    Column("content_hash", H),
    Column("cid", Text),
    Column("score", BigInteger),
    Column("reason", Integer),
    Column("slashed_wei", W),
)
slashes_t = Table(
    "slashes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", BigInteger, nullable=False, index=True),
    Column("round", Integer, nullable=False),
    Column("trainer", A, nullable=False, index=True),
    Column("amount_wei", W, nullable=False),
    Column("reason", Integer, nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("tx_hash", H, nullable=False),
)
trainers_t = Table(
    "trainers",
    metadata,
    Column("address", A, primary_key=True),
    Column("registered", Boolean, nullable=False, default=False),
    Column("stake_balance_wei", W, nullable=False, default="0"),
    Column("reliability_ppm", Integer, nullable=False, default=0),
    Column("reliability_jobs", Integer, nullable=False, default=0),
)


def _hex(b: Any) -> str:
    return "0x" + bytes(b).hex()


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes | bytearray):
        return _hex(v)
    if isinstance(v, dict) or hasattr(v, "items"):
        return {k: _jsonable(x) for k, x in dict(v).items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**53:
        return str(v)
    return v


def make_engine(db_url: str) -> Engine:
    kwargs: dict[str, Any] = {}
    if db_url.startswith("sqlite"):
        # the API serves from a thread pool; SQLite connections may cross threads there
        kwargs["connect_args"] = {"check_same_thread": False}
    try:
        engine = create_engine(db_url, **kwargs)
        metadata.create_all(engine)
    except (ArgumentError, NoSuchModuleError, OperationalError) as exc:
        raise ConfigError(f"cannot open the indexer database {db_url!r}: {exc}") from None
    return engine


@dataclass
class IndexStats:
    from_block: int
    to_block: int
    logs_seen: int
    inserted: int


class Indexer:
    """Follows one FedMarket contract's events into the database at `db_url`."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        db_url: str,
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
        abi = load_artifact("FedMarket")["abi"]
        self._abi_by_topic: dict[bytes, dict[str, Any]] = {}
        for item in abi:
            if item.get("type") == "event" and item["name"] in INDEXED_EVENTS:
                self._abi_by_topic[event_abi_to_log_topic(item)] = item
        self._handlers: dict[str, Callable[[Connection, dict[str, Any], dict[str, Any]], None]] = {
            name: getattr(self, f"_on_{name}") for name in INDEXED_EVENTS
        }

    # -- cursor ---------------------------------------------------------------------------
    def last_block(self) -> int | None:
        with self.engine.connect() as conn:
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
        while block <= to_block:
            end = min(block + self.batch_size - 1, to_block)
            logs = self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": block, "toBlock": end}
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

    def _cursor_in(self, conn: Connection) -> int | None:
        row = conn.execute(
            select(cursor_t.c.last_block).where(cursor_t.c.contract == self.address)
        ).first()
        return None if row is None else int(row[0])

    def _ingest(self, conn: Connection, log: Any) -> int:
        topics = log.get("topics") or []
        if not topics:
            return 0
        abi = self._abi_by_topic.get(bytes(topics[0]))
        if abi is None:
            return 0
        decoded = get_event_data(self.w3.codec, abi, log)
        name = abi["name"]
        args = _named_args(abi, decoded["args"])
        tx_hash = _hex(log["transactionHash"])
        log_index = int(log["logIndex"])
        dup = conn.execute(
            select(events_t.c.id).where(
                events_t.c.tx_hash == tx_hash, events_t.c.log_index == log_index
            )
        ).first()
        if dup is not None:
            return 0
        meta = {"block": int(log["blockNumber"]), "tx": tx_hash, "log_index": log_index}
        trainer = args.get("trainer") or args.get("owner")
        conn.execute(
            events_t.insert().values(
                tx_hash=tx_hash,
                log_index=log_index,
                block_number=meta["block"],
                name=name,
                job_id=args.get("jobId"),
                round=args.get("round"),
                trainer=Web3.to_checksum_address(trainer) if trainer else None,
                args=json.dumps(_jsonable(args), sort_keys=True),
            )
        )
        self._handlers[name](conn, args, meta)
        return 1

    # -- folding events into the derived tables ------------------------------------------
    def _job(self, conn: Connection, job_id: int) -> dict[str, Any] | None:
        row = conn.execute(select(jobs_t).where(jobs_t.c.job_id == job_id)).mappings().first()
        return dict(row) if row else None

    def _update_job(self, conn: Connection, job_id: int, **values: Any) -> None:
        conn.execute(jobs_t.update().where(jobs_t.c.job_id == job_id).values(**values))

    def _participant(self, conn: Connection, job_id: int, trainer: str) -> dict[str, Any] | None:
        row = (
            conn.execute(
                select(participants_t).where(
                    participants_t.c.job_id == job_id, participants_t.c.trainer == trainer
                )
            )
            .mappings()
            .first()
        )
        return dict(row) if row else None

    def _update_participant(self, conn: Connection, job_id: int, trainer: str, **v: Any) -> None:
        conn.execute(
            participants_t.update()
            .where(participants_t.c.job_id == job_id, participants_t.c.trainer == trainer)
            .values(**v)
        )

    def _trainer(self, conn: Connection, address: str) -> dict[str, Any]:
        row = (
            conn.execute(select(trainers_t).where(trainers_t.c.address == address))
            .mappings()
            .first()
        )
        if row is None:
            conn.execute(trainers_t.insert().values(address=address))
            return {"address": address, "registered": False, "stake_balance_wei": "0"}
        return dict(row)

    def _round(self, conn: Connection, job_id: int, round_: int) -> dict[str, Any]:
        row = (
            conn.execute(
                select(rounds_t).where(rounds_t.c.job_id == job_id, rounds_t.c.round == round_)
            )
            .mappings()
            .first()
        )
        if row is None:
            conn.execute(rounds_t.insert().values(job_id=job_id, round=round_))
            return {"job_id": job_id, "round": round_, "commits": 0, "reveals": 0}
        return dict(row)

    def _update_round(self, conn: Connection, job_id: int, round_: int, **v: Any) -> None:
        conn.execute(
            rounds_t.update()
            .where(rounds_t.c.job_id == job_id, rounds_t.c.round == round_)
            .values(**v)
        )

    def _submission(self, conn: Connection, job_id: int, round_: int, trainer: str) -> None:
        row = conn.execute(
            select(submissions_t.c.trainer).where(
                submissions_t.c.job_id == job_id,
                submissions_t.c.round == round_,
                submissions_t.c.trainer == trainer,
            )
        ).first()
        if row is None:
            conn.execute(
                submissions_t.insert().values(job_id=job_id, round=round_, trainer=trainer)
            )

    def _update_submission(
        self, conn: Connection, job_id: int, round_: int, trainer: str, **v: Any
    ) -> None:
        self._submission(conn, job_id, round_, trainer)
        conn.execute(
            submissions_t.update()
            .where(
                submissions_t.c.job_id == job_id,
                submissions_t.c.round == round_,
                submissions_t.c.trainer == trainer,
            )
            .values(**v)
        )

    def _on_JobCreated(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        p = a["params"]
        conn.execute(
            jobs_t.insert().values(
                job_id=a["jobId"],
                owner=a["owner"],
                aggregator=a["aggregator"],
                status=1,
                reward_wei=str(a["reward"]),
                stake_required_wei=str(p["stakeRequired"]),
                rounds=p["rounds"],
                posted_rounds=0,
                min_trainers=p["minTrainers"],
                max_trainers=p["maxTrainers"],
                trainers=0,
                slash_bps=p["slashBps"],
                min_reliability_ppm=p["minReliabilityPpm"],
                spec_hash=_hex(p["specHash"]),
                spec_cid=p["specCid"],
                initial_model_hash=_hex(p["initialModelHash"]),
                initial_model_cid=p["initialModelCid"],
                model_hash=_hex(p["initialModelHash"]),
                model_cid=p["initialModelCid"],
                validation_commitment=_hex(p["validationCommitment"]),
                slashed_pool_wei="0",
                refund_claimed=False,
                created_block=m["block"],
                created_tx=m["tx"],
            )
        )

    def _on_TrainerJoined(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        job = self._job(conn, a["jobId"])
        if job is None:
            return
        self._trainer(conn, a["trainer"])
        conn.execute(
            participants_t.insert().values(
                job_id=a["jobId"],
                trainer=a["trainer"],
                join_order=job["trainers"],
                locked_stake_wei=str(a["lockedStake"]),
                total_score=0,
                flagged_rounds=0,
                slashed_wei="0",
                claimed=False,
            )
        )
        self._update_job(conn, a["jobId"], trainers=job["trainers"] + 1)

    def _on_JobStarted(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._update_job(conn, a["jobId"], status=2)

    def _on_RoundScheduled(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._round(conn, a["jobId"], a["round"])
        self._update_round(
            conn,
            a["jobId"],
            a["round"],
            commit_end=a["commitEnd"],
            reveal_end=a["revealEnd"],
            post_deadline=a["postDeadline"],
        )

    def _on_UpdateCommitted(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        rnd = self._round(conn, a["jobId"], a["round"])
        self._update_round(conn, a["jobId"], a["round"], commits=(rnd["commits"] or 0) + 1)
        self._update_submission(
            conn,
            a["jobId"],
            a["round"],
            a["trainer"],
            commitment=_hex(a["commitment"]),
            commit_order=rnd["commits"] or 0,
        )

    def _on_UpdateRevealed(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        rnd = self._round(conn, a["jobId"], a["round"])
        self._update_round(conn, a["jobId"], a["round"], reveals=(rnd["reveals"] or 0) + 1)
        self._update_submission(
            conn,
            a["jobId"],
            a["round"],
            a["trainer"],
            content_hash=_hex(a["contentHash"]),
            cid=a["cid"],
        )

    def _on_RoundPosted(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        job_id, round_ = a["jobId"], a["round"]
        job = self._job(conn, job_id)
        if job is None:
            return
        order = conn.execute(
            select(participants_t.c.trainer)
            .where(participants_t.c.job_id == job_id)
            .order_by(participants_t.c.join_order)
        ).all()
        scores, reasons = list(a["scores"]), list(a["reasons"])
        for (trainer,), score, reason in zip(order, scores, reasons, strict=False):
            self._update_submission(conn, job_id, round_, trainer, score=score, reason=reason)
            p = self._participant(conn, job_id, trainer)
            if p is not None:
                self._update_participant(
                    conn, job_id, trainer, total_score=int(p["total_score"]) + int(score)
                )
        self._round(conn, job_id, round_)
        self._update_round(
            conn,
            job_id,
            round_,
            posted=True,
            model_hash=_hex(a["modelHash"]),
            model_cid=a["modelCid"],
            total_score=sum(scores),
            accepted=sum(1 for r in reasons if r == 0),
            flagged=sum(1 for r in reasons if Reason(r).slashable) if reasons else 0,
            missing=sum(1 for r in reasons if r in (1, 2)),
            posted_block=m["block"],
            posted_tx=m["tx"],
        )
        self._update_job(
            conn,
            job_id,
            posted_rounds=max(job["posted_rounds"], round_),
            model_hash=_hex(a["modelHash"]),
            model_cid=a["modelCid"],
            total_score=int(job["total_score"] or 0) + sum(scores),
        )

    def _on_TrainerSlashed(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        job_id, trainer, amount = a["jobId"], a["trainer"], int(a["amount"])
        conn.execute(
            slashes_t.insert().values(
                job_id=job_id,
                round=a["round"],
                trainer=trainer,
                amount_wei=str(amount),
                reason=a["reason"],
                block_number=m["block"],
                tx_hash=m["tx"],
            )
        )
        self._update_submission(conn, job_id, a["round"], trainer, slashed_wei=str(amount))
        p = self._participant(conn, job_id, trainer)
        if p is not None:
            self._update_participant(
                conn,
                job_id,
                trainer,
                flagged_rounds=p["flagged_rounds"] + 1,
                slashed_wei=str(int(p["slashed_wei"]) + amount),
                locked_stake_wei=str(int(p["locked_stake_wei"]) - amount),
            )
        job = self._job(conn, job_id)
        if job is not None:
            self._update_job(
                conn, job_id, slashed_pool_wei=str(int(job["slashed_pool_wei"]) + amount)
            )
        t = self._trainer(conn, trainer)
        conn.execute(
            trainers_t.update()
            .where(trainers_t.c.address == trainer)
            .values(stake_balance_wei=str(max(0, int(t["stake_balance_wei"]) - amount)))
        )

    def _on_JobFinished(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._update_job(conn, a["jobId"], status=3)

    def _on_JobFinalized(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._update_job(
            conn,
            a["jobId"],
            status=4,
            reward_pool_wei=str(a["rewardPool"]),
            owner_refund_wei=str(a["ownerRefund"]),
            total_score=int(a["totalScore"]),
        )

    def _on_JobAbandoned(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._update_job(
            conn,
            a["jobId"],
            status=5,
            reward_pool_wei=str(a["rewardPool"]),
            owner_refund_wei=str(a["ownerRefund"]),
        )

    def _on_JobCancelled(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        job = self._job(conn, a["jobId"])
        if job is not None:
            self._update_job(conn, a["jobId"], status=6, owner_refund_wei=job["reward_wei"])

    def _on_RewardClaimed(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._update_participant(
            conn,
            a["jobId"],
            a["trainer"],
            claimed=True,
            reward_wei=str(a["reward"]),
            stake_unlocked_wei=str(a["stakeUnlocked"]),
            locked_stake_wei="0",
        )

    def _on_RefundClaimed(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._update_job(conn, a["jobId"], refund_claimed=True, owner_refund_wei=str(a["amount"]))

    def _on_ReliabilityUpdated(
        self, conn: Connection, a: dict[str, Any], m: dict[str, Any]
    ) -> None:
        self._trainer(conn, a["trainer"])
        conn.execute(
            trainers_t.update()
            .where(trainers_t.c.address == a["trainer"])
            .values(reliability_ppm=a["reliabilityPpm"], reliability_jobs=a["jobs"])
        )
        self._update_participant(
            conn,
            a["jobId"],
            a["trainer"],
            contribution_ppm=a["contributionPpm"],
            reliability_ppm_after=a["reliabilityPpm"],
        )

    def _on_ValidationRevealed(
        self, conn: Connection, a: dict[str, Any], m: dict[str, Any]
    ) -> None:
        self._update_job(
            conn, a["jobId"], validation_hash=_hex(a["contentHash"]), validation_cid=a["cid"]
        )

    def _on_TrainerRegistered(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._trainer(conn, a["trainer"])
        conn.execute(
            trainers_t.update()
            .where(trainers_t.c.address == a["trainer"])
            .values(registered=True, stake_balance_wei=str(a["stake"]))
        )

    def _on_StakeDeposited(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._trainer(conn, a["trainer"])
        conn.execute(
            trainers_t.update()
            .where(trainers_t.c.address == a["trainer"])
            .values(stake_balance_wei=str(a["balance"]))
        )

    def _on_StakeWithdrawn(self, conn: Connection, a: dict[str, Any], m: dict[str, Any]) -> None:
        self._on_StakeDeposited(conn, a, m)


def _named_args(abi: dict[str, Any], args: Any) -> dict[str, Any]:
    """Decoded event args as plain dicts (struct tuples named), addresses checksummed."""
    out: dict[str, Any] = {}
    for inp in abi["inputs"]:
        out[inp["name"]] = _plain(inp, args[inp["name"]])
    return out


def _plain(inp: dict[str, Any], v: Any) -> Any:
    t = inp["type"]
    if t == "tuple":
        if hasattr(v, "items"):
            return {c["name"]: _plain(c, v[c["name"]]) for c in inp["components"]}
        return {c["name"]: _plain(c, x) for c, x in zip(inp["components"], v, strict=True)}
    if t == "address":
        return Web3.to_checksum_address(v)
    if t.endswith("[]"):
        return [int(x) if isinstance(x, int) else x for x in v]
    return v


def index_market(market: Any, db_url: str, **kw: Any) -> IndexStats:
    """Convenience: bring the database at `db_url` up to date with `market` (a MarketClient)."""
    return Indexer(market.chain.w3, market.address, db_url, **kw).sync()
