"""`fedmarket account ...` (keys in an encrypted keystore) and `fedmarket deploy`."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from backend.cli.common import AccountOpt, guarded, password
from backend.cli.context import ConfigOpt, Ctx, DevAccountOpt, JsonOpt, emit, eth, out, to_wei
from backend.core.errors import ConfigError

account_app = typer.Typer(
    help="Keys in encrypted keystore files under <home>/keystore (never printed). The password "
    "comes from a prompt or FEDMARKET_PASSWORD.",
    no_args_is_help=True,
)


@account_app.command("new")
@guarded
def account_new(
    name: Annotated[str, typer.Argument(help="a local name for the key, e.g. owner")],
    config: ConfigOpt = None,
) -> None:
    """Generate a key and store it encrypted; prints its name and address."""
    ctx = Ctx(config)
    entry = ctx.keystore().new(name, password(f"password for new account {name}", confirm=True))
    out.print(f"{entry.name} {entry.address} ({entry.path})")


@account_app.command("import")
@guarded
def account_import(
    name: Annotated[str, typer.Argument(help="a local name for the key")],
    config: ConfigOpt = None,
) -> None:
    """Store an existing private key (read from a hidden prompt or FEDMARKET_PRIVATE_KEY)."""
    ctx = Ctx(config)
    key = os.environ.get("FEDMARKET_PRIVATE_KEY") or typer.prompt(
        "private key (hex)", hide_input=True
    )
    entry = ctx.keystore().import_key(
        name, key, password(f"password for account {name}", confirm=True)
    )
    out.print(f"{entry.name} {entry.address} ({entry.path})")


@account_app.command("list")
@guarded
def account_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List keystore accounts (name and address)."""
    entries = Ctx(config).keystore().list()
    if as_json:
        emit(json.dumps([{"name": e.name, "address": e.address} for e in entries]))
        return
    if not entries:
        out.print("no accounts yet: `fedmarket account new NAME`")
    for e in entries:
        out.print(f"{e.name:<20} {e.address}")


@account_app.command("fund")
@guarded
def account_fund(
    who: Annotated[str, typer.Argument(help="account name or address to fund")],
    amount: Annotated[str, typer.Option("--eth", help="how much ETH to send")] = "10",
    source: Annotated[int, typer.Option("--from-dev", help="dev account that pays")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Dev chains only: send ETH from a well-known dev account to an account."""
    from web3 import Web3

    ctx = Ctx(config, dev_account=source)
    address = who if Web3.is_address(who) else ctx.keystore().find(who).address
    sender = ctx.signer(None, source)
    ctx.chain.send_value(sender, Web3.to_checksum_address(address), to_wei(amount, "--eth"))
    out.print(f"{address} now holds {eth(ctx.chain.balance(address))}")


def write_settings(path: Path, updates: dict[str, Any]) -> None:
    """Update top-level scalar keys of a TOML settings file (kept simple: scalars only)."""
    data: dict[str, Any] = {}
    if path.exists():
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    table = data.get("fedmarket", data)
    table.update(updates)
    lines = []
    nested = "fedmarket" in data
    if nested:
        lines.append("[fedmarket]")
    for key, value in table.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, str):
            lines.append(f"{key} = {json.dumps(value)}")
        else:
            raise ConfigError(f"{path}: cannot rewrite the non-scalar setting {key!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


@guarded
def deploy_cmd(
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    alpha_ppm: Annotated[
        int,
        typer.Option(
            help="reliability: weight of the newest job's stake against the decayed past, "
            "parts per million (each job decays the past weight by this much)"
        ),
    ] = 300_000,
    min_challenge_window: Annotated[
        int,
        typer.Option(
            help="shortest challenge window a job may set, seconds (0 on dev chains; hours in "
            "production, so every round can be checked before it is final)"
        ),
    ] = 0,
    challenge_bond: Annotated[str, typer.Option(help="ETH a challenger locks")] = "0.1",
    vote_bond: Annotated[str, typer.Option(help="ETH each committee member locks")] = "0.1",
) -> None:
    """Deploy FedMarket (with its ReliabilityRegistry) and its DisputeCourt and record the
    market's address (market_address) in the settings TOML."""
    from backend.chain.market import MarketClient

    ctx = Ctx(config, dev_account)
    sender = ctx.signer(account, dev_account)
    market, result = MarketClient.deploy(
        ctx.chain,
        sender,
        alpha_ppm,
        min_challenge_window=min_challenge_window,
        challenge_bond=to_wei(challenge_bond, "--challenge-bond"),
        vote_bond=to_wei(vote_bond, "--vote-bond"),
    )
    path = config or ctx.settings.config_path
    write_settings(path, {"market_address": market.address})
    out.print(
        f"FedMarket deployed at {market.address} with its DisputeCourt at "
        f"{market.court.address} and ReliabilityRegistry at {market.registry.address} "
        f"(gas {result.gas_used:,}); saved to {path}"
    )
