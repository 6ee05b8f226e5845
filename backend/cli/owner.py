"""`fedmarket owner ...`: the job owner's commands over the `backend.owner` library."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from backend.cli.common import AccountOpt, guarded, stage_progress
from backend.cli.context import (
    ConfigOpt,
    Ctx,
    DevAccountOpt,
    JobArg,
    JsonOpt,
    emit,
    out,
    status_line,
    writable_file,
)
from backend.core.files import atomic_write

owner_app = typer.Typer(
    help="The job owner: post a job with an escrowed reward, follow it, settle it.",
    no_args_is_help=True,
)


def _aggregator_address(ctx: Ctx, name_or_address: str) -> str:
    """job.toml's `aggregator`: an address, or the name of an account in the keystore."""
    from web3 import Web3

    if Web3.is_address(name_or_address):
        return str(Web3.to_checksum_address(name_or_address))
    return str(ctx.keystore().find(name_or_address).address)


def _job_dir(ctx: Ctx, market: Any, job_id: int) -> Path:
    from backend.owner.lifecycle import owner_job_dir

    return owner_job_dir(ctx.home, market.address, job_id)


@owner_app.command("create-job")
@guarded
def owner_create_job(
    spec: Annotated[Path, typer.Option("--spec", help="job.toml (see docs: market + model)")],
    validation: Annotated[
        Path | None,
        typer.Option(help="validation data (.npz x,y or .csv); overrides validation_file"),
    ] = None,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Post a job: upload the spec and initial weights, commit to the validation split's
    per-round chunks (a Merkle root), escrow the reward. The aggregator must be registered with
    enough free bond. The validation package stays local; chunk r is revealed after round r is
    posted (by the aggregator you give the package to, or `owner reveal-validation`)."""
    from backend.owner.jobfile import load_job_file
    from backend.owner.lifecycle import (
        create_job,
        keep_validation,
        min_challenge_window,
        preflight_job,
    )
    from backend.owner.publish import load_validation, prepare_job

    job_file, job_spec = load_job_file(spec)
    val = load_validation(job_file.validation_path(spec, validation), job_spec)
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    owner = ctx.signer(account, dev_account)
    aggregator = _aggregator_address(ctx, job_file.aggregator)
    artifacts = prepare_job(job_spec, val, ctx.store, rounds=job_file.rounds)
    params = job_file.job_params(
        artifacts, aggregator, min_challenge_window=min_challenge_window(market)
    )
    reward = job_file.reward_wei()
    preflight_job(market, owner, params, reward)  # before the progress bars: errors stay one line
    with stage_progress() as bars:
        upload = functools.partial(bars, "upload")
        job_id, result = create_job(market, ctx.store, owner, artifacts, params, reward, upload)
    kept = keep_validation(_job_dir(ctx, market, job_id), artifacts)
    if as_json:
        emit(
            json.dumps({"job_id": job_id, "validation": str(kept), "spec_cid": artifacts.spec_cid})
        )
        return
    out.print(f"job {job_id} created (gas {result.gas_used:,}); spec {artifacts.spec_cid}")
    out.print(
        f"validation package kept privately at {kept} — give it to the aggregator "
        f"{aggregator} (e.g. `fedmarket aggregator serve --validation {job_id}={kept}`): it "
        "reveals each round's validation chunk right after posting the round; if it does not, "
        "run `fedmarket owner reveal-validation` within the post duration, or forfeit the reward"
    )


@owner_app.command("status")
@guarded
def owner_status(job_id: JobArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """A job's status, phase, rounds and participants."""
    from backend.owner.lifecycle import job_status

    ctx = Ctx(config)
    market = ctx.market()
    info = job_status(market, ctx.job(market, job_id), ctx.store)
    if as_json:
        emit(json.dumps(info))
        return
    for key, value in info.items():
        if key == "participants":
            for p in value:
                out.print(
                    f"  {p['trainer']}  score {p['score_total']:.4f}  flagged "
                    f"{p['flagged_rounds']}  claimed {p['claimed']}{_privacy_cell(p)}"
                )
        else:
            out.print(f"{status_line(key, value, 20)}")


def _privacy_cell(participant: dict[str, Any]) -> str:
    """A DP job's participant: its claimed ε (cumulative) and any shortfall; '' otherwise."""
    if "epsilon" not in participant:
        return ""
    eps = participant["epsilon"]
    shown = "none" if eps is None else f"{eps:.3g}"
    note = participant["privacy"]
    return f"  ε {shown}" + (f" ({note})" if note else "")


def _owner_tx(name: str, doc: str, action: Callable[[Any, Any, int], Any]) -> None:
    """Register `owner <name> JOB_ID`: one owner transaction on one job."""

    def command(
        job_id: JobArg,
        config: ConfigOpt = None,
        account: AccountOpt = None,
        dev_account: DevAccountOpt = None,
    ) -> None:
        ctx = Ctx(config, dev_account)
        market = ctx.market()
        ctx.job(market, job_id)
        sender = ctx.signer(account, dev_account)
        result = action(market, sender, job_id)
        out.print(f"job {job_id}: {name} done (gas {result.gas_used:,})")

    command.__doc__ = doc
    owner_app.command(name)(guarded(command))


def _lifecycle(name: str) -> Callable[[Any, Any, int], Any]:
    """A `backend.owner.lifecycle` function, imported when the command runs (keeps --help fast)."""

    def call(market: Any, sender: Any, job_id: int) -> Any:
        from backend.owner import lifecycle

        return getattr(lifecycle, name)(market, sender, job_id)

    return call


_owner_tx("start", "Start a job that has its minimum number of trainers.", _lifecycle("start_job"))
_owner_tx(
    "finalize",
    "Settle a job after its last round: rewards become claimable.",
    _lifecycle("finalize_job"),
)
_owner_tx(
    "refund",
    "Take back what the rewards did not use (after finalization).",
    _lifecycle("refund_job"),
)


@owner_app.command("reveal-validation")
@guarded
def owner_reveal_validation(
    job_id: JobArg,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Publish the pending round's validation chunk and reveal it on chain (if the aggregator
    has not): it starts the round's challenge window. Due within the post duration of each post."""
    from backend.owner.lifecycle import kept_validation, load_package, reveal_chunk

    ctx = Ctx(config, dev_account)
    market = ctx.market()
    job = ctx.job(market, job_id)
    kept = kept_validation(_job_dir(ctx, market, job_id), job_id)
    package = load_package(job, kept.read_bytes(), source=str(kept))
    sender = ctx.signer(account, dev_account)
    revealed = reveal_chunk(market, ctx.store, sender, job, package)
    if revealed is None:
        pending = int(job.pendingRound)
        why = (
            "no round has been posted yet"
            if pending == 0
            else f"round {pending}'s chunk is already revealed"
        )
        out.print(f"job {job_id}: no validation chunk is due ({why})")
        return
    out.print(
        f"job {job_id}: round {revealed.round}'s validation chunk published as {revealed.cid} "
        f"and revealed (gas {revealed.result.gas_used:,}); challenges are open for "
        f"{int(job.challengeWindow)} s"
    )


@owner_app.command("download")
@guarded
def owner_download(
    job_id: JobArg,
    out_path: Annotated[Path, typer.Option("--out", help="where to write the .safetensors")],
    config: ConfigOpt = None,
) -> None:
    """Download the job's current (or final) model, checked against its on-chain sha256."""
    from backend.owner.lifecycle import download_model

    out_path = writable_file(out_path, "--out")
    ctx = Ctx(config)
    market = ctx.market()
    job = ctx.job(market, job_id)
    with stage_progress() as bars:
        model = download_model(market, ctx.store, job, functools.partial(bars, "download"))
    atomic_write(out_path, model.blob)
    out.print(
        f"wrote {out_path} ({len(model.blob):,} bytes, sha256 {model.sha256.hex()}, round "
        f"{model.rounds_posted} of {model.rounds})"
    )
