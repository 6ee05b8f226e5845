"""`fedmarket trainer ...`: the trainer's commands over `trainer_client`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from backend.cli.common import AccountOpt, guarded, stage_progress
from backend.cli.context import (
    ConfigOpt,
    Ctx,
    DevAccountOpt,
    JobArg,
    JsonOpt,
    emit,
    err,
    eth,
    out,
    status_line,
    to_wei,
    withdraw_free,
)
from backend.core.errors import ConfigError

trainer_app = typer.Typer(
    help="The trainer: stake, join jobs, train on private data, commit and reveal updates, "
    "claim rewards. Data files: .npz (arrays x, y) or .csv (last column the label).",
    no_args_is_help=True,
)


def _state_file(ctx: Ctx, market: Any, address: str) -> Path:
    return ctx.home / "trainer" / market.address.lower() / f"{address.lower()}.json"


@trainer_app.command("register")
@guarded
def trainer_register(
    stake: Annotated[str, typer.Option("--stake", help="ETH to put in the stake vault")],
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Register as a trainer with a stake (or add stake if already registered)."""
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    sender = ctx.signer(account, dev_account)
    wei = to_wei(stake, "--stake")
    if market.account_of(sender.address)["registered"]:
        market.deposit(sender, wei)
    else:
        market.register(sender, wei)
    acct = market.account_of(sender.address)
    out.print(f"{sender.address}: stake {eth(acct['balance'])} ({eth(acct['locked'])} locked)")


def _load_fitting(client_data: Path, spec: Any) -> Any:
    from backend.core.datasets import load_fitting_file

    m = spec.model
    return load_fitting_file(client_data, m.input_dim, m.num_classes, spec.min_rows)


def _job_spec(ctx: Ctx, market: Any, job_id: int) -> Any:
    from backend.protocol.fetch import fetch_job_spec

    return fetch_job_spec(market, ctx.store, job_id)


@trainer_app.command("join")
@guarded
def trainer_join(
    job_id: JobArg,
    data: Annotated[
        Path | None, typer.Option(help="check that this data file fits the job before staking")
    ] = None,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Join a job: locks the job's stake from your vault balance."""
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    ctx.job(market, job_id)
    if data is not None:
        _load_fitting(data, _job_spec(ctx, market, job_id))
    sender = ctx.signer(account, dev_account)
    result = market.join(sender, job_id)
    out.print(f"{sender.address} joined job {job_id} (gas {result.gas_used:,})")


@trainer_app.command("run")
@guarded
def trainer_run(
    command: typer.Context,
    job_id: JobArg,
    data: Annotated[
        Path | None,
        typer.Option(help="your private data: .npz (x, y) or .csv (not with --flower-client)"),
    ] = None,
    flower_client: Annotated[
        str | None,
        typer.Option(
            "--flower-client",
            help="train with your Flower NumPyClient instead, MODULE:ATTR (an instance, its "
            "class or a function of no arguments); it keeps its own data",
        ),
    ] = None,
    once: Annotated[bool, typer.Option(help="do one round (commit and reveal), then exit")] = False,
    poll: Annotated[float, typer.Option(help="seconds between chain polls")] = 5.0,
    timeout: Annotated[
        float | None, typer.Option(help="give up (exit 1) after this many seconds of waiting")
    ] = None,
    step_only: Annotated[
        bool, typer.Option("--step", help="do at most one action now (no waiting), then exit")
    ] = False,
    seed: Annotated[int, typer.Option(help="seed of local training")] = 0,
    device: Annotated[
        str,
        typer.Option(
            help="where local training runs: auto (CUDA, then MPS, then CPU), cpu, cuda[:N] "
            "or mps; the round's result never depends on it (a Flower client picks its own)"
        ),
    ] = "auto",
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Train and submit every round: commit in the commit phase, reveal in the reveal phase.
    Safe to restart: a pending commitment is revealed, never replaced."""
    from trainer_client import runner

    if data is None and flower_client is None:
        _missing_option(
            command, "data", "Or --flower-client MODULE:ATTR, to train a Flower client."
        )
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    ctx.job(market, job_id)
    make_client = _client_maker(ctx, market, job_id, data, flower_client, seed, device)
    sender = ctx.signer(account, dev_account)

    def report(s: runner.Step) -> None:
        err.print(f"job {job_id} round {s.round}: {s.action} {s.detail}".rstrip(), soft_wrap=True)

    with stage_progress() as bars:
        client = make_client(sender, _state_file(ctx, market, sender.address), bars)
        if step_only:
            s = runner.step(client, job_id)
            report(s)
            emit(json.dumps({"action": s.action, "round": s.round}))
            return
        done = runner.run(client, job_id, once=once, poll_s=poll, timeout_s=timeout, report=report)
    emit(json.dumps({"actions": [[s.action, s.round] for s in done]}))


def _missing_option(command: typer.Context, name: str, hint: str) -> NoReturn:
    """The usage error typer gives for a missing required option (exit 2), for an option that
    is required only without another one."""
    # typer >= 0.21 carries its own copy of click: take the exception from typer's, whichever
    missing = sys.modules[typer.BadParameter.__module__].MissingParameter
    param = next(p for p in command.command.params if p.name == name)
    raise missing(hint, ctx=command, param=param)


def _client_maker(
    ctx: Ctx,
    market: Any,
    job_id: int,
    data: Path | None,
    flower_client: str | None,
    seed: int,
    device: str,
) -> Callable[[Any, Path, Any], Any]:
    """What trains for `trainer run`: the data file, checked against the job now, or the Flower
    client, loaded now (so that a bad file or MODULE:ATTR fails before anything else)."""
    from backend.core.models import template_of
    from trainer_client.client import TrainerClient
    from trainer_client.flower import FlowerTrainer, check_flower_client, load_flower_client

    if flower_client is not None:
        if data is not None:
            raise ConfigError(
                "--data or --flower-client, not both: a Flower client has its own data"
            )
        numpy_client = load_flower_client(flower_client)
        check_flower_client(numpy_client, template_of(_job_spec(ctx, market, job_id).model))
        return lambda sender, state, bars: FlowerTrainer(
            market, ctx.store, sender, numpy_client, seed=seed, state_file=state, progress=bars
        )
    assert data is not None  # trainer_run asked for one
    dataset = _load_fitting(data, _job_spec(ctx, market, job_id))
    return lambda sender, state, bars: TrainerClient(
        market,
        ctx.store,
        sender,
        dataset,
        seed=seed,
        state_file=state,
        progress=bars,
        device=device,
    )


@trainer_app.command("status")
@guarded
def trainer_status(
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    address: Annotated[
        str | None, typer.Option(help="look at this address (no key needed)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stake balance, locked stake, reliability, and the jobs this trainer is in."""
    from trainer_client.status import trainer_status as status_of

    ctx = Ctx(config, dev_account)
    market = ctx.market()
    info = status_of(market, _whose_status(ctx, account, dev_account, address))
    if as_json:
        emit(json.dumps(info))
        return
    for key, value in info.items():
        if key != "jobs":
            out.print(f"{status_line(key, value, 20)}")
    for j in info["jobs"]:
        out.print(
            f"  job {j['job_id']}: {j['status']} round {j['round']} score "
            f"{j['score_total']:.4f} claimed {j['claimed']}"
        )


def _whose_status(
    ctx: Ctx, account: str | None, dev_account: int | None, address: str | None
) -> str:
    """The address `trainer status` looks at: --address, --dev-account, or a keystore account."""
    from web3 import Web3

    if address:
        return str(Web3.to_checksum_address(address))
    if dev_account is not None:
        return str(ctx.signer(None, dev_account).address)
    ks = ctx.keystore()
    entries = ks.list()
    if not account and len(entries) != 1:
        raise ConfigError("say whose status: --account NAME, --dev-account N or --address")
    return str(ks.find(account or entries[0].name).address)


@trainer_app.command("claim")
@guarded
def trainer_claim(
    job_id: JobArg,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Claim your reward from a finalized job (and unlock what is left of your stake)."""
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    ctx.job(market, job_id)
    sender = ctx.signer(account, dev_account)
    before = market.account_of(sender.address)["balance"]
    wallet = ctx.chain.balance(sender.address)
    result = market.claim(sender, job_id)
    paid = [e for e in market.claims(job_id) if e["trainer"] == sender.address]
    reward = int(paid[-1]["reward"]) if paid else 0
    if as_json:
        emit(json.dumps({"job_id": job_id, "reward_wei": reward, "gas": result.gas_used}))
        return
    out.print(
        f"job {job_id}: claimed {eth(reward)} (gas {result.gas_used:,}); stake "
        f"{eth(market.account_of(sender.address)['balance'])} (was {eth(before)}), "
        f"wallet was {eth(wallet)}"
    )


@trainer_app.command("withdraw")
@guarded
def trainer_withdraw(
    amount: Annotated[
        str | None, typer.Argument(help="ETH to withdraw (default: all free stake)")
    ] = None,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Withdraw free (unlocked) stake to your wallet."""
    ctx = Ctx(config, dev_account)
    withdraw_free(ctx.market(), ctx.signer(account, dev_account), amount)


@trainer_app.command("explain")
@guarded
def trainer_explain(
    job_id: JobArg,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    address: Annotated[
        str | None, typer.Option(help="explain this address (no key needed)")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="indexer DB, SQLAlchemy URL (default: <home>/index.db)"),
    ] = None,
    recompute: Annotated[
        bool,
        typer.Option(
            "--recompute",
            help="also re-run each round whose validation chunk is revealed from public "
            "artifacts (as `audit verify` does) for the checks' own words",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Why this reward: per round your reason, score and rank, share of the pool, any slash
    with its evidence, and the reliability change, all from public records (the chain's
    events, indexed as `fedmarket audit index` does)."""
    from web3 import Web3

    from backend.audit.explain import explain_trainer

    if address is not None and not Web3.is_address(address):
        raise ConfigError(f"--address {address!r} is not a 0x address (40 hex digits)")
    ctx = Ctx(config, dev_account)
    who = _whose_status(ctx, account, dev_account, address)
    engine = _open_index(ctx, db).engine
    checked = None
    if recompute:  # imported here: re-running rounds pulls in torch
        from backend.audit.verify import recomputed_details

        checked = recomputed_details(ctx.market(), ctx.store, job_id)
    x = explain_trainer(engine, job_id, who, checked)
    if as_json:
        emit(json.dumps(x.to_dict()))
        return
    _print_explanation(x)


def _open_index(ctx: Ctx, db: str | None) -> Any:
    """The indexer over the market's events, brought up to date (its `engine` is the index)."""
    from backend.audit.indexer import Indexer

    market = ctx.market()
    if db is None:
        ctx.home.mkdir(parents=True, exist_ok=True)
        db = f"sqlite:///{ctx.home / 'index.db'}"
    indexer = Indexer(market.chain.w3, market.address, db)
    indexer.sync()
    return indexer


def _fp(v: int | None) -> str:
    return "-" if v is None else f"{v / 1e6:.4f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _print_explanation(x: Any) -> None:
    """An Explanation for people: the rounds table, then totals, slashes and reliability."""
    out.print(
        f"job {x.job_id} · {x.job_status} · trainer {x.trainer} · rounds "
        f"{x.rounds_posted}/{x.rounds}"
    )
    out.print(_explain_table(x))
    _print_totals(x)
    for s in x.slashes:
        where = "settlement" if s.round == 0 else f"round {s.round}"
        undone = " (reversed)" if s.reversed else ""
        out.print(f"slash {where}: {eth(s.amount_wei)} {s.reason_label}{undone}, tx {s.tx_hash}")
        out.print(f"  rule: {s.rule}", soft_wrap=True)
        out.print(f"  evidence: {s.evidence}", soft_wrap=True)
    for c in x.reliability:
        before = "none (first job)" if c.before_ppm is None else f"{c.before_ppm / 1e6:.3f}"
        out.print(
            f"reliability {before} → {c.after_ppm / 1e6:.3f} (this job's contribution "
            f"{c.contribution_ppm / 1e6:.3f}, {c.jobs} job(s))"
        )
    if not x.reliability:
        out.print("reliability: not recorded for this job yet (recorded at settlement)")
    for note in x.notes:
        out.print(f"note: {note}")


def _explain_table(x: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"Job {x.job_id}: why this reward")
    cols = ("round", "reason", "score", "rank", "of round", "of pool", "earns ETH", "slashed ETH")
    for col in cols:
        table.add_column(col, justify="left" if col == "reason" else "right")
    table.add_column("detail")
    for r in x.per_round:
        label = r.reason_label or r.state
        table.add_row(
            str(r.round) + (" (corrected)" if r.corrected else ""),
            f"[red]{label}[/]" if r.flagged else label,
            _fp(r.score_fp),
            "-" if r.rank is None else f"{r.rank}/{r.ranked}",
            _pct(r.round_share),
            _pct(r.pool_share),
            "-" if r.pool_part_wei is None else f"{r.pool_part_wei / 1e18:.4f}",
            "-" if r.slash is None else f"{r.slash.amount_wei / 1e18:.4f}",
            r.detail if r.checked_detail is None else f"{r.detail}\nre-run: {r.checked_detail}",
        )
    return table


def _print_totals(x: Any) -> None:
    pool = "pool" if x.pool_final else "pool if finalized now"
    if x.reward_claimed_wei is not None:
        claim = f"claimed {eth(x.reward_claimed_wei)}"
    else:
        claim = f"claimable {eth(x.claimable_wei)}" if x.pool_final else "claimable once settled"
    due = x.pending_charge_wei
    out.print(
        f"score {_fp(x.total_score_fp)} of {_fp(x.job_total_score_fp)} ({_pct(x.share)}) · "
        f"{pool} {eth(x.pool_wei)} · reward {eth(x.reward_wei)} ({claim}) · slashed "
        f"{eth(x.slashed_wei)}" + (f" · missed-round charge due {eth(due)}" if due else "")
    )
