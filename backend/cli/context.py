"""What the role commands (`account`, `deploy`, `owner`, `trainer`) share: the options, the
consoles, and the context that opens settings, chain, store and market for one command.

Every command reads one Settings object (flags > FEDMARKET_* environment > TOML file), talks to
the chain it names — a JSON-RPC node (FEDMARKET_RPC_URL=http://...) or, by default, a persistent
in-process dev chain whose journal is <home>/chain.jsonl (FEDMARKET_RPC_URL=embedded:<path>
picks another file) — and the content store (IPFS with FEDMARKET_IPFS_API, else <home>/store).
Errors print one line `error: ...` on stderr and exit 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from backend.cli.common import password
from backend.core.errors import ConfigError
from backend.core.units import eth_text

if TYPE_CHECKING:  # the CLI imports the chain lazily (start-up time)
    from eth_account.signers.local import LocalAccount

    from backend.chain.market import MarketClient

# The role commands print plain text: no highlighting of numbers and addresses.
out = Console(width=None if sys.stdout.isatty() else 132, highlight=False)
err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: <home>/config.toml)"),
]
DevAccountOpt = Annotated[
    int | None,
    typer.Option(
        "--dev-account",
        help="use the dev chain's well-known account N instead of a keystore (dev chains only)",
    ),
]
JobArg = Annotated[int, typer.Argument(help="the job id", min=1)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print a JSON line instead of text")]


def emit(line: str) -> None:
    """A machine-readable line on stdout (never wrapped)."""
    sys.stdout.write(line + "\n")


class Ctx:
    """Settings, chain, store and market, opened lazily for one command."""

    def __init__(self, config: Path | None, dev_account: int | None = None) -> None:
        from backend.protocol.settings import load_settings

        self.settings = load_settings(config)
        self.config_file = config
        self.want_dev = dev_account is not None
        self._chain: Any = None
        self._store: Any = None

    @property
    def home(self) -> Path:
        return Path(self.settings.home)

    @property
    def chain(self) -> Any:
        if self._chain is None:
            from backend.protocol.connect import open_settings_chain

            self._chain = open_settings_chain(self.settings, dev_accounts=self.want_dev)
        return self._chain

    @property
    def store(self) -> Any:
        if self._store is None:
            from backend.protocol.connect import open_settings_store

            self._store = open_settings_store(self.settings)
        return self._store

    def market(self) -> Any:
        from backend.chain.market import MarketClient

        if not self.settings.market_address:
            raise ConfigError(
                "no market address: run `fedmarket deploy`, or set FEDMARKET_MARKET_ADDRESS"
            )
        return MarketClient.at(self.chain, self.settings.market_address)

    def keystore(self) -> Any:
        from backend.chain.accounts import Keystore

        return Keystore(self.home / "keystore")

    def signer(self, account: str | None, dev_account: int | None) -> Any:
        """The key that signs: a dev chain's account N, or a keystore account (unlocked)."""
        if account and dev_account is not None:
            raise ConfigError("give either --account or --dev-account, not both")
        if dev_account is not None:
            if not self.chain.dev_keys:
                raise ConfigError("this chain exposes no dev accounts; use --account NAME")
            if not 0 <= dev_account < len(self.chain.dev_keys):
                raise ConfigError(f"--dev-account must be 0..{len(self.chain.dev_keys) - 1}")
            return self.chain.dev_account(dev_account)
        ks = self.keystore()
        if not account:
            entries = ks.list()
            if len(entries) != 1:
                raise ConfigError(
                    "say which key signs: --account NAME (see `fedmarket account list`) "
                    "or --dev-account N on a dev chain"
                )
            account = entries[0].name
        return ks.unlock(account, password(f"password for account {account}"))

    def job(self, market: Any, job_id: int) -> Any:
        """The job's record; an error if the market has no such job."""
        from backend.owner.lifecycle import existing_job

        return existing_job(market, job_id)


def writable_file(path: Path, what: str) -> Path:
    """`path` if a file can be written there (checked before any work is done)."""
    path = path.expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; give a file name")
    if not parent.is_dir():
        raise ConfigError(f"{what} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{what} {path}: directory {parent} is not writable")
    return path


def to_wei(value: str | float | int, what: str) -> int:
    """An ETH amount given on the command line, in wei; `what` names the flag in errors."""
    from backend.owner.jobfile import eth_to_wei

    return eth_to_wei(value, what)


def withdraw_free(
    market: MarketClient, sender: LocalAccount, amount: str | None, noun: str = "stake"
) -> None:
    """Withdraw `amount` ETH (default: all) of `sender`'s free stake, saying first, in one
    line, why it cannot: nothing free, more than is free (with what holds the rest), or a
    bond cooldown still running."""
    acct = market.account_of(sender.address)
    free = acct["balance"] - acct["locked"]
    wei = free if amount is None else to_wei(amount, "AMOUNT")
    if wei <= 0 or wei > free:
        held = f"{eth(acct['locked'])} locked"
        if market.in_pool(sender.address):
            held += "; `fedmarket verifier leave` frees the committee pool's bond"
        raise ConfigError(f"{eth(free)} of your {noun} is free to withdraw ({held})")
    until = market.cooldown_of(sender.address)
    if market.chain.now() < until:
        raise ConfigError(f"your bond cools down until unix time {until}; withdraw after it")
    market.withdraw(sender, wei)
    balance = market.account_of(sender.address)["balance"]
    out.print(f"withdrew {eth(wei)}; {noun} now {eth(balance)}")


def eth(wei: int) -> str:
    return f"{eth_text(wei)} ETH"


def status_line(key: str, value: Any, width: int) -> str:
    """A status line for people: `stake_wei` (a JSON key, in wei) shows as `stake  1.5 ETH`."""
    if key.endswith("_wei"):
        label = key.removesuffix("_wei").replace("_", " ")
        return f"{label:<{width}} {'-' if value is None else eth(value)}"
    return f"{key.replace('_', ' '):<{width}} {value}"
