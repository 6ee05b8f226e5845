"""`fedmarket aggregator ...`: run the aggregator service, or post one round by hand."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from backend.cli.common import AccountOpt, guarded, password
from backend.core.errors import ConfigError

if TYPE_CHECKING:  # the heavy modules load only when a command runs
    from eth_account.signers.local import LocalAccount

    from aggregator.service import AggregatorService
    from backend.chain.base import Chain

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


@aggregator_app.command("register")
@guarded
def aggregator_register(
    bond: Annotated[str, typer.Option("--bond", help="ETH to add to your bond (may be 0)")],
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file")] = None,
    account: AccountOpt = None,
    dev_account: Annotated[
        int | None, typer.Option("--dev-account", help="use dev account N (dev chains only)")
    ] = None,
) -> None:
    """Register as an aggregator (or add bond): a job can name you only if your free bond
    covers its aggregator bond (by default its reward). A lie proven by a dispute costs the
    job's bond; a missed post forfeits it to the trainers."""
    from backend.chain.market import ROLE_AGGREGATOR
    from backend.cli.context import Ctx, eth, out, to_wei

    ctx = Ctx(config, dev_account)
    market = ctx.market()
    sender = ctx.signer(account, dev_account)
    wei = to_wei(bond, "--bond")
    market.register_role(sender, ROLE_AGGREGATOR, wei)
    acct = market.account_of(sender.address)
    out.print(
        f"{sender.address}: aggregator; bond {eth(acct['balance'])} "
        f"({eth(acct['locked'])} locked by jobs)"
    )


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


def load_account(
    keystore: Path | None,
    dev_account: int | None,
    chain: Chain,
    account: str | None = None,
    home: Path | str | None = None,
) -> LocalAccount:
    """The aggregator's key: a keystore account by name, a keystore file, or dev account N."""
    from backend.chain.accounts import Keystore, decrypt_keystore_file

    given = [o for o, v in (("--account", account), ("--keystore", keystore)) if v is not None]
    if dev_account is not None:
        given.append("--dev-account")
    if len(given) > 1:
        raise ConfigError(f"give one of --account, --keystore or --dev-account, not {given}")
    if dev_account is not None:
        if not chain.dev_keys:
            raise ConfigError("this chain exposes no dev accounts; use --account NAME")
        if not 0 <= dev_account < len(chain.dev_keys):
            raise ConfigError(f"--dev-account must be 0..{len(chain.dev_keys) - 1}")
        return chain.dev_account(dev_account)
    if account is not None:
        assert home is not None, "an --account needs the settings' home directory"
        return Keystore(Path(home) / "keystore").unlock(
            account, password(f"password for account {account}")
        )
    if keystore is None:
        raise ConfigError(
            "the aggregator needs a key: --account NAME (see `fedmarket account list`), "
            "--keystore FILE or --dev-account N"
        )
    return decrypt_keystore_file(keystore, password(f"password for {keystore}"))


def build_service(
    *,
    config: Path | None,
    rpc_url: str | None,
    market_address: str | None,
    keystore: Path | None,
    dev_account: int | None,
    validation: list[str] | None,
    account: str | None = None,
    validation_dir: Path | None,
    poll_interval: float,
    fetch_timeout: float,
    from_block: int = 0,
) -> AggregatorService:
    """The service the settings and options describe, with its chain, store and key."""
    from aggregator.service import AggregatorService
    from backend.chain.market import MarketClient
    from backend.protocol.connect import open_settings_chain, open_settings_store
    from backend.protocol.settings import load_settings

    settings = load_settings(config, rpc_url=rpc_url, market_address=market_address)
    if not settings.market_address:
        raise ConfigError(
            "no market address: run `fedmarket deploy`, or set FEDMARKET_MARKET_ADDRESS "
            "(or --market-address)"
        )
    chain = open_settings_chain(settings, dev_accounts=dev_account is not None)
    market = MarketClient.at(chain, settings.market_address)
    store = open_settings_store(settings)
    signer = load_account(keystore, dev_account, chain, account, settings.home)
    journal_dir = settings.home / "aggregator" / market.address.lower() / signer.address.lower()
    return AggregatorService(
        market,
        store,
        signer,
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
    account: AccountOpt = None,
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
        account=account,
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
    account: AccountOpt = None,
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
        account=account,
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
    # the round this pass posted (reasons, scores, loss, accuracy), so a user sees the result
    posted = (
        [r.model_dump() for r in service.rounds_view(job)] if action.startswith("posted") else []
    )
    line = {"action": action, **view.model_dump(), "posted": posted[-1] if posted else None}
    sys.stdout.write(json.dumps(line) + "\n")
    if action.startswith(("error", "post failed")):
        raise typer.Exit(1)
