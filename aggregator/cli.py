"""`fedmarket aggregator ...`: run the aggregator service, or post one round by hand."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from backend.cli_common import guarded, password
from backend.errors import ConfigError

aggregator_app = typer.Typer(
    name="aggregator",
    help="The aggregator role: watch the chain for your jobs, score and aggregate each round, "
    "post results (a resumable HTTP service).",
    no_args_is_help=True,
)

ValidationOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--validation",
        help="JOB=PATH.npz: the validation split the job's owner gave you (repeatable)",
    ),
]
ValidationDirOpt = Annotated[
    Path | None,
    typer.Option(help="a directory of <jobId>.npz validation files (checked on every pass)"),
]
KeystoreOpt = Annotated[
    Path | None,
    typer.Option(help="the aggregator's encrypted keystore JSON (password: FEDMARKET_PASSWORD)"),
]
DevAccountOpt = Annotated[
    int | None, typer.Option(help="use dev account N of a dev chain (anvil) instead of a keystore")
]
ConfigOpt = Annotated[Path | None, typer.Option(help="TOML settings file")]
RpcOpt = Annotated[str | None, typer.Option(help="JSON-RPC URL (overrides FEDMARKET_RPC_URL)")]
MarketOpt = Annotated[
    str | None, typer.Option(help="FedMarket address (overrides FEDMARKET_MARKET_ADDRESS)")
]
FetchTimeoutOpt = Annotated[
    float, typer.Option(help="seconds to retry a missing or unreachable update before reason 2")
]


def parse_validation(items: list[str] | None) -> dict[int, Path]:
    """`["3=val3.npz", ...]` → {3: Path("val3.npz")}, with errors a user can act on."""
    out: dict[int, Path] = {}
    for item in items or []:
        job, sep, path = item.partition("=")
        if not sep or not job.strip().isdigit() or not path:
            raise ConfigError(f"--validation expects JOB=PATH.npz (e.g. 3=val.npz); got {item!r}")
        p = Path(path).expanduser()
        if not p.exists():
            raise ConfigError(f"--validation {item}: {p} does not exist")
        out[int(job)] = p
    return out


def load_account(keystore: Path | None, dev_account: int | None, chain):
    """The aggregator's key: a decrypted keystore, or a dev chain's account N."""
    from eth_account import Account

    if keystore is not None and dev_account is not None:
        raise ConfigError("give either --keystore or --dev-account, not both")
    if dev_account is not None:
        return chain.dev_account(dev_account)
    if keystore is None:
        raise ConfigError("the aggregator needs a key: --keystore FILE or --dev-account N")
    try:
        encrypted = json.loads(Path(keystore).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read keystore {keystore}: {exc}") from None
    try:
        key = Account.decrypt(encrypted, password(f"password for {keystore}"))
    except ValueError as exc:
        raise ConfigError(f"cannot decrypt {keystore}: {exc}") from None
    return Account.from_key(key)


def build_service(
    *,
    config: Path | None,
    rpc_url: str | None,
    market_address: str | None,
    keystore: Path | None,
    dev_account: int | None,
    validation: list[str] | None,
    validation_dir: Path | None,
    poll_interval: float,
    fetch_timeout: float,
    from_block: int = 0,
):
    from aggregator.service import AggregatorService
    from backend.chain import open_chain
    from backend.market import MarketClient
    from backend.settings import load_settings
    from backend.storage import open_store

    settings = load_settings(config, rpc_url=rpc_url, market_address=market_address)
    if settings.embedded_chain:
        raise ConfigError(
            "the aggregator service needs a JSON-RPC node: the embedded chain lives inside one "
            "process. Set FEDMARKET_RPC_URL (or --rpc-url), e.g. a `fedmarket devnet` anvil"
        )
    if not settings.market_address:
        raise ConfigError("no market address: set FEDMARKET_MARKET_ADDRESS or --market-address")
    chain = open_chain(
        settings.rpc_url, dev_accounts=dev_account is not None, tx_timeout_s=settings.tx_timeout_s
    )
    if settings.chain_id is not None and chain.chain_id != settings.chain_id:
        raise ConfigError(f"chain id {chain.chain_id} is not the expected {settings.chain_id}")
    market = MarketClient.at(chain, settings.market_address)
    store = open_store(settings.ipfs_api, settings.store_dir, retries=settings.storage_retries)
    account = load_account(keystore, dev_account, chain)
    journal_dir = settings.home / "aggregator" / market.address.lower() / account.address.lower()
    return AggregatorService(
        market,
        store,
        account,
        journal_dir=journal_dir,
        validation=parse_validation(validation),
        validation_dir=validation_dir,
        poll_interval_s=poll_interval,
        fetch_timeout_s=fetch_timeout,
        from_block=from_block,
    )


@aggregator_app.command()
@guarded
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8700,
    poll_interval: Annotated[float, typer.Option(help="seconds between watcher passes")] = 5.0,
    validation: ValidationOpt = None,
    validation_dir: ValidationDirOpt = None,
    keystore: KeystoreOpt = None,
    dev_account: DevAccountOpt = None,
    rpc_url: RpcOpt = None,
    market_address: MarketOpt = None,
    config: ConfigOpt = None,
    fetch_timeout: FetchTimeoutOpt = 30.0,
    from_block: Annotated[int, typer.Option(help="first block to scan for JobCreated")] = 0,
    log_level: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
) -> None:
    """Run the aggregator: watch the chain, post every round once, serve /jobs over HTTP."""
    import uvicorn

    from aggregator.service import create_app

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    service = build_service(
        config=config,
        rpc_url=rpc_url,
        market_address=market_address,
        keystore=keystore,
        dev_account=dev_account,
        validation=validation,
        validation_dir=validation_dir,
        poll_interval=poll_interval,
        fetch_timeout=fetch_timeout,
        from_block=from_block,
    )
    typer.echo(
        f"aggregator {service.address} on market {service.market.address}; "
        f"API at http://{host}:{port}/docs",
        err=True,
    )
    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level.lower())


@aggregator_app.command("run-round")
@guarded
def run_round(
    job: Annotated[int, typer.Argument(help="the job id")],
    validation: ValidationOpt = None,
    validation_dir: ValidationDirOpt = None,
    keystore: KeystoreOpt = None,
    dev_account: DevAccountOpt = None,
    rpc_url: RpcOpt = None,
    market_address: MarketOpt = None,
    config: ConfigOpt = None,
    fetch_timeout: FetchTimeoutOpt = 30.0,
) -> None:
    """One pass for one job: rebuild from the chain, post its round if due, print the state."""
    service = build_service(
        config=config,
        rpc_url=rpc_url,
        market_address=market_address,
        keystore=keystore,
        dev_account=dev_account,
        validation=validation,
        validation_dir=validation_dir,
        poll_interval=0.0,
        fetch_timeout=fetch_timeout,
    )
    service.discover()
    if job not in service.jobs:
        raise ConfigError(f"job {job} does not name {service.address} as its aggregator")
    service.jobs = {job: service.jobs[job]}
    action = service.poll_once(ignore_backoff=True)[job]
    view = service.job_view(job)
    sys.stdout.write(json.dumps({"action": action, **view.model_dump()}) + "\n")
    if action.startswith(("error", "post failed")):
        raise typer.Exit(1)
