"""The indexer database's tables: every contract event (FedMarket's and its DisputeCourt's), and
the records folded from them.

Rounds, submissions and participants hold each round's *result of record*: the post, or the
correction a dispute put in its place (what the aggregator posted then stays in the
`overturned_*` columns); a round whose validation chunk the owner withheld is `voided` when the
job is forfeited (its scores no longer count); slashes a dispute or a forfeit reversed are kept,
marked `reversed`, and no longer count in any total.

Amounts in wei are decimal strings (they exceed 64-bit integers), addresses checksummed, hashes
0x-prefixed hex. `make_engine` opens a database and creates any missing table.
"""

from __future__ import annotations

from typing import Any

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
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from backend.core.errors import ConfigError

metadata = MetaData()
WEI = String(80)  # wei amounts (uint96/uint256) as decimal strings: beyond 64-bit integers
ADDRESS = String(42)  # checksummed addresses
HASH = String(66)  # 0x-prefixed 32-byte hashes

cursor_t = Table(
    "cursor",
    metadata,
    Column("contract", ADDRESS, primary_key=True),
    Column("last_block", BigInteger, nullable=False),
)
events_t = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tx_hash", HASH, nullable=False),
    Column("log_index", Integer, nullable=False),
    Column("block_number", BigInteger, nullable=False, index=True),
    Column("name", String(32), nullable=False, index=True),
    Column("job_id", BigInteger, index=True),
    Column("round", Integer),
    Column("trainer", ADDRESS, index=True),
    Column("args", Text, nullable=False),
    UniqueConstraint("tx_hash", "log_index", name="uq_event_tx_log"),
)
jobs_t = Table(
    "jobs",
    metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("owner", ADDRESS, nullable=False, index=True),
    Column("aggregator", ADDRESS, nullable=False),
    Column("status", Integer, nullable=False, index=True),
    Column("reward_wei", WEI, nullable=False),
    Column("stake_required_wei", WEI, nullable=False),
    Column("rounds", Integer, nullable=False),
    Column("posted_rounds", Integer, nullable=False, default=0),
    Column("min_trainers", Integer, nullable=False),
    Column("max_trainers", Integer, nullable=False),
    Column("trainers", Integer, nullable=False, default=0),
    Column("slash_bps", Integer, nullable=False),
    Column("min_reliability_ppm", Integer, nullable=False),
    Column("min_reliability_weight_wei", WEI, nullable=False, default="0"),
    Column("spec_hash", HASH, nullable=False),
    Column("spec_cid", Text, nullable=False),
    Column("initial_model_hash", HASH, nullable=False),
    Column("initial_model_cid", Text, nullable=False),
    Column("model_hash", HASH, nullable=False),
    Column("model_cid", Text, nullable=False),
    Column("validation_root", HASH, nullable=False),
    Column("chunks_revealed", Integer, nullable=False, default=0),
    Column("aggregator_bond_wei", WEI, nullable=False, default="0"),
    Column("aggregator_bond_slashed_wei", WEI, nullable=False, default="0"),
    Column("challenge_window", BigInteger, nullable=False, default=0),
    Column("dispute_open", Boolean, nullable=False, default=False),
    Column("disputes", Integer, nullable=False, default=0),
    Column("owner_fault", Boolean),  # set when the job is abandoned: whose fault it was
    Column("slashed_pool_wei", WEI, nullable=False, default="0"),
    Column("reward_pool_wei", WEI),
    Column("owner_refund_wei", WEI),
    Column("total_score", BigInteger),
    Column("refund_claimed", Boolean, nullable=False, default=False),
    Column("created_block", BigInteger, nullable=False),
    Column("created_tx", HASH, nullable=False),
)
participants_t = Table(
    "participants",
    metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("trainer", ADDRESS, primary_key=True),
    Column("join_order", Integer, nullable=False),
    Column("locked_stake_wei", WEI, nullable=False),
    Column("total_score", BigInteger, nullable=False, default=0),
    Column("flagged_rounds", Integer, nullable=False, default=0),
    Column("slashed_wei", WEI, nullable=False, default="0"),
    Column("reward_wei", WEI),
    Column("stake_unlocked_wei", WEI),
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
    Column("model_hash", HASH),
    Column("model_cid", Text),
    Column("total_score", BigInteger),
    Column("accepted", Integer),
    Column("flagged", Integer),
    Column("missing", Integer),
    Column("posted_block", BigInteger),
    Column("posted_tx", HASH),
    Column("chunk_hash", HASH),  # the round's validation chunk, once revealed
    Column("chunk_cid", Text),
    Column("final_at", BigInteger),  # end of the challenge window set by the chunk reveal
    Column("dispute", String(16)),  # disputed | upheld | overturned | no decision
    Column("corrected", Boolean, nullable=False, default=False),
    Column("voided", Boolean, nullable=False, default=False),  # undone: its chunk was withheld
    Column("overturned_model_hash", HASH),  # what the aggregator posted, if corrected
    Column("overturned_model_cid", Text),
)
submissions_t = Table(
    "submissions",
    metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("trainer", ADDRESS, primary_key=True),
    Column("commitment", HASH),
    Column("commit_order", Integer),
    Column("content_hash", HASH),
    Column("cid", Text),
    Column("score", BigInteger),
    Column("reason", Integer),
    Column("slashed_wei", WEI),
    Column("overturned_score", BigInteger),  # what the aggregator posted, if corrected
    Column("overturned_reason", Integer),
)
slashes_t = Table(
    "slashes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", BigInteger, nullable=False, index=True),
    Column("round", Integer, nullable=False),
    Column("trainer", ADDRESS, nullable=False, index=True),
    Column("amount_wei", WEI, nullable=False),
    Column("reason", Integer, nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("tx_hash", HASH, nullable=False),
    Column("reversed", Boolean, nullable=False, default=False),  # undone by a dispute
)
trainers_t = Table(
    "trainers",
    metadata,
    Column("address", ADDRESS, primary_key=True),
    Column("registered", Boolean, nullable=False, default=False),
    Column("stake_balance_wei", WEI, nullable=False, default="0"),
    Column("reliability_ppm", Integer, nullable=False, default=0),
    Column("reliability_jobs", Integer, nullable=False, default=0),
    Column("reliability_weight_wei", WEI, nullable=False, default="0"),
)

accounts_t = Table(
    "accounts",
    metadata,
    Column("address", ADDRESS, primary_key=True),
    Column("roles", Integer, nullable=False, default=0),  # ROLE_AGGREGATOR 1 | ROLE_VERIFIER 2
    Column("balance_wei", WEI, nullable=False, default="0"),  # vault stake (free + locked)
    Column("cooldown_until", BigInteger),
    Column("in_pool", Boolean, nullable=False, default=False),  # the court's committee pool
)
disputes_t = Table(
    "disputes",
    metadata,
    Column("dispute_id", BigInteger, primary_key=True),
    Column("job_id", BigInteger, nullable=False, index=True),
    Column("round", Integer, nullable=False),
    Column("challenger", ADDRESS, nullable=False),
    Column("challenger_digest", HASH, nullable=False),
    Column("posted_digest", HASH, nullable=False),
    Column("members", Text, nullable=False),  # JSON list of the committee's addresses
    Column("commit_end", BigInteger, nullable=False),
    Column("reveal_end", BigInteger, nullable=False),
    Column("state", Integer, nullable=False),  # DisputeCourt: 1 voting .. 5 no decision
    Column("winning_digest", HASH),
    Column("votes_committed", Integer, nullable=False, default=0),
    Column("votes_revealed", Integer, nullable=False, default=0),
    Column("corrected", Boolean, nullable=False, default=False),
    Column("correction_poster", ADDRESS),
    Column("correction_tx", HASH),
    Column("aggregator_bond_slashed_wei", WEI, nullable=False, default="0"),
    Column("opened_block", BigInteger, nullable=False),
    Column("opened_tx", HASH, nullable=False),
    Column("resolved_block", BigInteger),
)
dispute_votes_t = Table(
    "dispute_votes",
    metadata,
    Column("dispute_id", BigInteger, primary_key=True),
    Column("member", ADDRESS, primary_key=True),
    Column("seat", Integer, nullable=False),
    Column("committed", Boolean, nullable=False, default=False),
    Column("digest", HASH),  # revealed vote
)


def make_engine(db_url: str) -> Engine:
    """An engine on `db_url` with every table created (a ConfigError if it cannot be opened)."""
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
