"""`fedmarket audit ...` and `fedmarket api ...`: the auditor's records, re-verification, API.

`audit index` follows the contract's events into the indexer database; `audit jobs | job |
trainer` print what the REST API serves (through the same app, in-process) as tables or JSON;
`audit verify JOB` re-runs every round whose validation chunk is revealed from public artifacts
(against its result of record: the post, or a dispute's correction) and exits 1 on any
mismatch;
`api serve` runs the REST API and the dashboard.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from backend.cli.common import guarded
from backend.core.errors import ConfigError, FedMarketError, Reason

if TYPE_CHECKING:  # the CLI imports these lazily, to start fast
    from rich.console import Console

    from backend.audit.indexer import IndexStats
    from backend.audit.verify import VerifyReport
    from backend.chain.market import MarketClient
    from backend.protocol.settings import Settings

audit_app = typer.Typer(
    name="audit",
    help="The auditor role: index the contract's events, query every record, re-verify rounds.",
    no_args_is_help=True,
)
api_app = typer.Typer(
    name="api",
    help="The read-only REST API (OpenAPI at /docs) and dashboard (/) over the indexer database.",
    no_args_is_help=True,
)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL of the indexer DB (default: sqlite in the home dir)"),
]
ConfigOpt = Annotated[Path | None, typer.Option(help="TOML settings file")]
RpcOpt = Annotated[str | None, typer.Option(help="JSON-RPC URL (overrides FEDMARKET_RPC_URL)")]
MarketOpt = Annotated[
    str | None, typer.Option(help="FedMarket address (overrides FEDMARKET_MARKET_ADDRESS)")
]
IndexOpt = Annotated[bool, typer.Option("--index", help="bring the index up to date first")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _settings(config: Path | None, rpc: str | None, market: str | None) -> Settings:
    from backend.protocol.settings import load_settings

    return load_settings(config, rpc_url=rpc, market_address=market)


def _db_url(settings: Settings, db: str | None) -> str:
    if db:
        return db
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'index.db'}"


def _market(settings: Settings) -> MarketClient:
    from backend.chain.market import MarketClient
    from backend.protocol.connect import open_settings_chain

    if not settings.market_address:
        raise ConfigError(
            "no FedMarket address: set FEDMARKET_MARKET_ADDRESS (or --market) to the deployed "
            "contract"
        )
    chain = open_settings_chain(settings)
    return MarketClient.at(chain, settings.market_address)


def _index(
    settings: Settings,
    db_url: str,
    batch: int = 500,
    from_block: int = 0,
    confirmations: int = 0,
) -> IndexStats:
    from backend.audit.indexer import Indexer

    market = _market(settings)
    indexer = Indexer(
        market.chain.w3,
        market.address,
        db_url,
        batch_size=batch,
        start_block=from_block,
        confirmations=confirmations,
    )
    return indexer.sync()


class _Reader:
    """Reads the API's own endpoints in-process, so the CLI prints exactly what it serves."""

    def __init__(self, db_url: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fastapi.testclient import TestClient

        from backend.audit.api import create_api

        self.client = TestClient(create_api(db_url))

    def get(self, path: str, **params: Any) -> Any:
        r = self.client.get(path, params={k: v for k, v in params.items() if v is not None})
        if r.status_code != 200:
            body = r.json()
            raise FedMarketError(body.get("reason") or str(body))
        return r.json()

    def all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.get(path, limit=500, offset=offset, **params)
            items += page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return items


def _reader(
    config: Path | None, rpc: str | None, market: str | None, db: str | None, index: bool
) -> _Reader:
    """The records the audit commands print: the indexer DB, brought up to date if asked."""
    settings = _settings(config, rpc, market)
    url = _db_url(settings, db)
    if index:
        _index(settings, url)
    return _Reader(url)


def _out() -> Console:
    from backend.cli.common import out

    return out


def _eth(wei: str | int | None) -> str:
    return "-" if wei is None else f"{int(wei) / 1e18:.6f}"


def _score(v: int | None) -> str:
    return "-" if v is None else f"{v / 1e6:.4f}"


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=None, sort_keys=False) + "\n")


@audit_app.command("index")
@guarded
def index_cmd(
    db: DbOpt = None,
    from_block: Annotated[int, typer.Option(min=0, help="first block on a fresh index")] = 0,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="blocks per get_logs")] = 500,
    confirmations: Annotated[
        int, typer.Option(min=0, help="stay this many blocks behind the head (reorg safety)")
    ] = 0,
    config: ConfigOpt = None,
    rpc: RpcOpt = None,
    market: MarketOpt = None,
) -> None:
    """Follow the contract's events into the database (resumes from the last indexed block)."""
    settings = _settings(config, rpc, market)
    stats = _index(settings, _db_url(settings, db), batch, from_block, confirmations)
    _out().print(
        f"indexed blocks {stats.from_block}..{stats.to_block}: {stats.logs_seen} events seen, "
        f"{stats.inserted} new",
        highlight=False,
    )


@audit_app.command("jobs")
@guarded
def jobs_cmd(
    db: DbOpt = None,
    status: Annotated[str | None, typer.Option(help="created | running | ... | settled")] = None,
    trainer: Annotated[str | None, typer.Option(help="only jobs this trainer joined")] = None,
    index: IndexOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    rpc: RpcOpt = None,
    market: MarketOpt = None,
) -> None:
    """Every indexed job."""
    jobs = _reader(config, rpc, market, db, index).all("/jobs", status=status, trainer=trainer)
    if as_json:
        _emit_json(jobs)
        return
    table = Table(title="Jobs")
    for col in ("job", "status", "owner", "rounds", "trainers", "reward (ETH)", "slashed (ETH)"):
        table.add_column(col, justify="right" if col not in ("status", "owner") else "left")
    table.add_column("chunks")
    table.add_column("disputes", justify="right")
    for j in jobs:
        table.add_row(
            str(j["job_id"]),
            j["status"],
            j["owner"],
            f"{j['posted_rounds']}/{j['rounds']}",
            str(j["trainers"]),
            _eth(j["reward_wei"]),
            _eth(j["slashed_pool_wei"]),
            f"{j['chunks_revealed']}/{j['rounds']}",
            str(j["disputes"]),
        )
    _out().print(table)


def job_record(reader: _Reader, job_id: int) -> dict[str, Any]:
    return {
        "job": reader.get(f"/jobs/{job_id}"),
        "rounds": reader.all(f"/jobs/{job_id}/rounds"),
        "submissions": reader.all(f"/jobs/{job_id}/submissions"),
        "payouts": reader.all(f"/jobs/{job_id}/payouts"),
        "slashes": reader.all(f"/jobs/{job_id}/slashes"),
        "disputes": reader.all(f"/jobs/{job_id}/disputes"),
    }


@audit_app.command("job")
@guarded
def job_cmd(
    job_id: Annotated[int, typer.Argument(min=1, help="job id")],
    db: DbOpt = None,
    index: IndexOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    rpc: RpcOpt = None,
    market: MarketOpt = None,
) -> None:
    """One job: its rounds (results of record), each trainer's score or flag per round,
    payouts, slashes and disputes."""
    rec = job_record(_reader(config, rpc, market, db, index), job_id)
    if as_json:
        _emit_json(rec)
        return
    job, out = rec["job"], _out()
    out.print(
        f"job {job['job_id']} · {job['status']} · owner {job['owner']} · aggregator "
        f"{job['aggregator']} · reward {_eth(job['reward_wei'])} ETH · rounds "
        f"{job['posted_rounds']}/{job['rounds']} · validation chunks "
        f"{job['chunks_revealed']}/{job['rounds']} · bond {_eth(job['aggregator_bond_wei'])} ETH"
        + (f" · {job['disputes']} dispute(s)" if job["disputes"] else ""),
        highlight=False,
    )
    trainers = [p["trainer"] for p in rec["payouts"]]
    cells = {(s["round"], s["trainer"]): _submission_cell(s) for s in rec["submissions"]}
    table = Table(title=f"Job {job_id}: rounds (score, or reason)")
    table.add_column("round", justify="right")
    for t in trainers:
        table.add_column(f"{t[:6]}…{t[-4:]}", justify="right")
    table.add_column("total", justify="right")
    table.add_column("accepted/flagged", justify="right")
    table.add_column("model", justify="left")
    for r in rec["rounds"]:
        table.add_row(
            str(r["round"]) + (" (corrected)" if r["corrected"] else ""),
            *[cells.get((r["round"], t), "-") for t in trainers],
            _score(r["total_score"]),
            f"{r['accepted'] or 0}/{r['flagged'] or 0}" if r["posted"] else "open",
            (r["model_hash"] or "-")[:14],
        )
    out.print(table)
    out.print(_payouts_table(rec["payouts"], job))
    if rec["disputes"]:
        out.print(_disputes_table(rec["disputes"]))


def _disputes_table(disputes: list[dict[str, Any]]) -> Table:
    table = Table(title="Disputes")
    for col in ("dispute", "round", "challenger", "votes", "outcome", "bond slashed (ETH)"):
        table.add_column(col, justify="left" if col in ("challenger", "outcome") else "right")
    for d in disputes:
        outcome = d["outcome"] + (" · corrected" if d["corrected"] else "")
        table.add_row(
            str(d["dispute_id"]),
            str(d["round"]),
            d["challenger"],
            f"{d['votes_revealed']}/{len(d['members'])}",
            outcome,
            _eth(d["aggregator_bond_slashed_wei"]),
        )
    return table


def _submission_cell(submission: dict[str, Any]) -> str:
    """A submission in the rounds table: its score if accepted, else its reason (red if flagged)."""
    if submission["reason"] is None:
        return "pending"
    if submission["reason"] == Reason.ACCEPTED:
        return _score(submission["score"])
    label = submission["reason_label"]
    return f"[red]{label}[/]" if submission["flagged"] else label


def _payouts_table(payouts: list[dict[str, Any]], job: dict[str, Any] | None) -> Table:
    table = Table(title="Payouts")
    cols = ("job", "trainer", "score total", "flagged", "slashed (ETH)", "reward (ETH)")
    for col in (*cols, "contribution", "reliability after"):
        if col == "trainer":
            table.add_column(col, no_wrap=True, min_width=42)
        else:
            table.add_column(col, justify="right")
    for p in payouts:
        table.add_row(
            str(p["job_id"]),
            p["trainer"],
            _score(p["total_score"]),
            str(p["flagged_rounds"]),
            _eth(p["slashed_wei"]),
            _eth(p["reward_wei"]),
            "-" if p["contribution_ppm"] is None else f"{p['contribution_ppm'] / 1e6:.3f}",
            "-"
            if p["reliability_ppm_after"] is None
            else f"{p['reliability_ppm_after'] / 1e6:.3f}",
        )
    if job is not None:
        table.add_row("", "owner refund", "", "", "", _eth(job["owner_refund_wei"]), "", "")
    return table


@audit_app.command("trainer")
@guarded
def trainer_cmd(
    address: Annotated[str, typer.Argument(help="the trainer's 0x address")],
    db: DbOpt = None,
    index: IndexOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    rpc: RpcOpt = None,
    market: MarketOpt = None,
) -> None:
    """A trainer: stake, reliability, and its history across jobs."""
    reader = _reader(config, rpc, market, db, index)
    rec = reader.get(f"/trainers/{address}")
    rec["slashes"] = reader.all(f"/trainers/{address}/slashes")
    if as_json:
        _emit_json(rec)
        return
    out = _out()
    out.print(
        f"trainer {rec['address']} · stake {_eth(rec['stake_balance_wei'])} ETH · reliability "
        f"{rec['reliability_ppm'] / 1e6:.3f} over {rec['reliability_jobs']} job(s) · joined "
        f"{rec['jobs_joined']} job(s)",
        highlight=False,
    )
    out.print(_payouts_table(rec["history"], None))
    if rec["slashes"]:
        table = Table(title="Slashes")
        for col in ("job", "round", "reason", "amount (ETH)"):
            table.add_column(col, justify="right")
        for s in rec["slashes"]:
            table.add_row(
                str(s["job_id"]), str(s["round"]), s["reason_label"], _eth(s["amount_wei"])
            )
        out.print(table)


@audit_app.command("verify")
@guarded
def verify_cmd(
    job_id: Annotated[int, typer.Argument(min=1, help="job id")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    rpc: RpcOpt = None,
    market: MarketOpt = None,
    ipfs_api: Annotated[str | None, typer.Option(help="Kubo RPC API (overrides env)")] = None,
    store_dir: Annotated[Path | None, typer.Option(help="local content store directory")] = None,
) -> None:
    """Re-run every round of JOB whose validation chunk is revealed; exit 1 on any mismatch."""
    from backend.audit.verify import verify_job
    from backend.protocol.settings import load_settings
    from backend.storage import open_store

    settings = load_settings(
        config, rpc_url=rpc, market_address=market, ipfs_api=ipfs_api, store_dir=store_dir
    )
    client = _market(settings)
    store = open_store(settings.ipfs_api, settings.store_dir, settings.storage_retries)
    report = verify_job(client, store, job_id)
    print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


def print_report(report: VerifyReport, as_json: bool = False) -> None:
    """A VerifyReport as a table (per round ok / mismatch) or JSON; errors go to stderr."""
    from backend.cli.common import err

    if as_json:
        _emit_json(report.to_dict())
    else:
        out = _out()
        table = Table(title=f"Job {report.job_id}: re-verification ({report.status})")
        table.add_column("round", justify="right")
        table.add_column("result")
        table.add_column("val loss", justify="right")
        table.add_column("val acc", justify="right")
        dp = any(e is not None for r in report.rounds for e in r.epsilon)
        if dp:
            table.add_column("ε claimed (per trainer, join order)")
        for r in report.rounds:
            result = "[green]ok[/]" if r.ok else "\n".join(m.describe() for m in r.mismatches)
            table.add_row(
                f"{r.round} (corrected)" if r.corrected else str(r.round),
                result if r.ok else f"[red]{result}[/]",
                "-" if r.validation_loss is None else f"{r.validation_loss:.4f}",
                "-" if r.validation_accuracy is None else f"{r.validation_accuracy:.3f}",
                *([_epsilons(r.epsilon)] if dp else []),
            )
        if report.rounds:
            out.print(table)
        for u in report.unverified:
            out.print(f"[yellow]{u.describe()}[/]", highlight=False)
        for m in report.settlement:
            out.print(f"[red]mismatch:[/] {m.describe()}", highlight=False)
        if report.ok:
            pending = f", {len(report.unverified)} not verifiable yet" if report.unverified else ""
            out.print(
                f"job {report.job_id}: {report.rounds_verified} round(s) and the settlement "
                f"re-verified, no mismatch{pending}",
                highlight=False,
            )
    if report.error:
        err.print(f"[bold red]error:[/] {report.error}", highlight=False, soft_wrap=True)
    elif report.mismatches:
        err.print(
            f"[bold red]error:[/] job {report.job_id}: {len(report.mismatches)} mismatch(es) "
            "between the chain and the recomputation",
            highlight=False,
        )


def _epsilons(epsilon: list[float | None]) -> str:
    """Claimed ε per participant: '-' for none."""
    return " ".join("-" if e is None else f"{e:.3g}" for e in epsilon)


@api_app.command("serve")
@guarded
def serve_cmd(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    index: IndexOpt = False,
    with_store: Annotated[
        bool,
        typer.Option(help="let /jobs/{id}/metrics evaluate models from the content store"),
    ] = True,
    config: ConfigOpt = None,
    rpc: RpcOpt = None,
    market: MarketOpt = None,
) -> None:
    """Serve the REST API (OpenAPI docs at /docs) and the dashboard (/)."""
    import uvicorn

    from backend.audit.api import create_api
    from backend.storage import open_store

    settings = _settings(config, rpc, market)
    url = _db_url(settings, db)
    if index:
        _index(settings, url)
    store = (
        open_store(settings.ipfs_api, settings.store_dir, settings.storage_retries)
        if with_store
        else None
    )
    app = create_api(url, store=store)
    uvicorn.run(app, host=host, port=port, log_level="info")
