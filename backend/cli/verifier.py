"""`fedmarket verifier ...`: register a bond, watch and challenge rounds, vote in disputes."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import typer

from backend.cli.common import AccountOpt, guarded
from backend.cli.context import (
    ConfigOpt,
    Ctx,
    DevAccountOpt,
    JsonOpt,
    emit,
    eth,
    out,
    to_wei,
    withdraw_free,
)
from backend.core.errors import ConfigError

verifier_app = typer.Typer(
    help="The verifier: re-run every posted round as soon as its validation chunk is public, "
    "challenge a result that does not reproduce (with a bond), vote when drawn into a dispute "
    "committee. Keys live in the keystore, as for every role.",
    no_args_is_help=True,
)
DisputeArg = Annotated[int, typer.Argument(help="the dispute id", min=1)]


def _service(ctx: Ctx, account: str | None, dev_account: int | None, challenge: bool) -> Any:
    from verifier import VerifierJournal, VerifierService

    market = ctx.market()
    signer = ctx.signer(account, dev_account)
    path = ctx.home / "verifier" / market.address.lower() / f"{signer.address.lower()}.json"
    try:
        journal = VerifierJournal.open(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return VerifierService(market, ctx.store, signer, journal, challenge=challenge)


def _print(actions: list[Any]) -> None:
    if not actions:
        out.print("nothing to do now")
    for a in actions:
        out.print(f"job {a.job_id} round {a.round}: {a.kind} {a.detail}".rstrip())


@verifier_app.command("register")
@guarded
def verifier_register(
    bond: Annotated[str, typer.Option("--bond", help="ETH to add to your bond (may be 0)")],
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Register as a verifier (or add bond) and join the committee pool: you may challenge any
    round, and committees are drawn from the pool. Membership locks the court's vote bond
    until you leave (`fedmarket verifier leave`): your first committee seat's bond; a further
    seat at the same time locks another. Missing or losing a vote drops you from the pool
    (`fedmarket verifier serve` rejoins)."""
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    sender = ctx.signer(account, dev_account)
    market.register_verifier(sender, to_wei(bond, "--bond"))
    acct = market.account_of(sender.address)
    need = market.court_params()["vote_bond"]
    out.print(
        f"{sender.address}: verifier in the committee pool; bond {eth(acct['balance'])} "
        f"({eth(acct['locked'])} locked, of which {eth(need)} for your committee seat)"
    )


@verifier_app.command("leave")
@guarded
def verifier_leave(
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Leave the committee pool: the membership bond is released, withdrawable after the
    one-day bond cooldown (seats already taken stay bonded until their disputes resolve)."""
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    sender = ctx.signer(account, dev_account)
    market.leave_pool(sender)
    until = market.cooldown_of(sender.address)
    out.print(f"{sender.address} left the committee pool; bond withdrawable from unix time {until}")


@verifier_app.command("status")
@guarded
def verifier_status(
    job: Annotated[int | None, typer.Argument(help="a job id (default: every dispute)")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The committee pool, and the disputes on this market (or one job): round, challenger,
    committee, outcome (`--json`: the disputes only)."""
    from verifier.disputes import dispute_rows

    ctx = Ctx(config)
    market = ctx.market()
    rows = dispute_rows(market, job)
    if as_json:
        emit(json.dumps(rows))
        return
    pool = market.verifiers()
    out.print(f"committee pool: {len(pool)} member(s)" + (f": {', '.join(pool)}" if pool else ""))
    if not rows:
        out.print("no disputes" + (f" on job {job}" if job else ""))
    for r in rows:
        out.print(
            f"dispute {r['dispute']} job {r['job']} round {r['round']}: {r['outcome']}; "
            f"challenger {r['challenger']}; committee {', '.join(r['committee'])}; "
            f"aggregator bond slashed {eth(r['aggregator_bond_slashed_wei'])}"
        )


@verifier_app.command("challenge")
@guarded
def verifier_challenge(
    job: Annotated[int, typer.Argument(help="the job id", min=1)],
    round_: Annotated[int, typer.Argument(metavar="ROUND", help="the pending round", min=1)],
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Re-run a pending round and challenge it if the result does not reproduce (locks the
    court's challenge bond: lost if the committee upholds the round)."""
    ctx = Ctx(config, dev_account)
    service = _service(ctx, account, dev_account, challenge=True)
    result = service.check(job, round_)
    if result.matches:
        raise ConfigError(
            f"job {job} round {round_} reproduces exactly (digest 0x{result.digest.hex()}): "
            "there is nothing to challenge"
        )
    _print([service.challenge_round(job, round_, result.digest)])


@verifier_app.command("vote")
@guarded
def verifier_vote(
    dispute: DisputeArg,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Take the next due step of a dispute: commit your vote, reveal it, resolve, or post the
    correct result of an overturned round."""
    ctx = Ctx(config, dev_account)
    action = _service(ctx, account, dev_account, challenge=False).advance(dispute)
    _print([action] if action else [])


@verifier_app.command("serve")
@guarded
def verifier_serve(
    poll_interval: Annotated[float, typer.Option(help="seconds between passes")] = 2.0,
    no_challenge: Annotated[
        bool, typer.Option("--no-challenge", help="check and vote, but never challenge")
    ] = False,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
) -> None:
    """Run the verifier: check each round as soon as its chunk is public, challenge a
    mismatch, vote when drawn (restart-safe: the journal keeps vote salts)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(message)s")
    ctx = Ctx(config, dev_account)
    service = _service(ctx, account, dev_account, challenge=not no_challenge)
    out.print(f"verifier {service.address} watching {service.market.address}")
    try:
        service.serve(poll_interval)
    except KeyboardInterrupt:
        out.print("stopped")


@verifier_app.command("withdraw")
@guarded
def verifier_withdraw(
    amount: Annotated[str | None, typer.Argument(help="ETH (default: all free bond)")] = None,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Withdraw free bond (a released bond waits out a one-day cooldown first)."""
    ctx = Ctx(config, dev_account)
    withdraw_free(ctx.market(), ctx.signer(account, dev_account), amount, noun="bond")


__all__ = ["verifier_app"]
