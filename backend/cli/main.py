"""The `fedmarket` command: one entry point, a subcommand group per role."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backend.cli.common import err, fail, out
from backend.core.errors import FedMarketError

app = typer.Typer(
    name="fedmarket",
    help="A blockchain-backed federated-learning marketplace: owners post jobs with escrowed "
    "rewards, trainers stake and submit pseudo-gradients, an aggregator scores and aggregates "
    "them, contracts pay by proof of contribution. Runs on an in-process EVM and a local store "
    "by default; set FEDMARKET_RPC_URL / FEDMARKET_IPFS_API for a real node and IPFS daemon.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """fedmarket: subcommands per role (demo, owner, trainer, aggregator, audit, ...)."""


@app.command()
def demo(
    trainers: Annotated[int, typer.Option(min=1, max=256, help="number of trainers")] = 5,
    attackers: Annotated[int, typer.Option(min=0, help="how many of them are malicious")] = 0,
    rounds: Annotated[int, typer.Option(min=1, max=1000, help="training rounds")] = 3,
    attack: Annotated[
        str, typer.Option(help="sign_flip | noise | label_flip | zero")
    ] = "sign_flip",
    scoring: Annotated[str, typer.Option(help="loss_gain | loo | shapley")] = "loss_gain",
    rule: Annotated[
        str,
        typer.Option(
            help="outlier rule: consensus | cosine_norm | multi_krum | median | trimmed_mean"
            " | norm_bound | cosine"
        ),
    ] = "consensus",
    codec: Annotated[
        str,
        typer.Option(
            help="what trainers send: fp32 | int8 (4x smaller) | topk (25x smaller, error feedback)"
        ),
    ] = "fp32",
    non_iid: Annotated[
        float | None, typer.Option(help="Dirichlet alpha for non-IID shards (default: IID)")
    ] = None,
    store: Annotated[
        Path | None, typer.Option(help="directory of the local content store (default: a temp dir)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed for data split, shards and models")] = 0,
    rpc_url: Annotated[
        str | None,
        typer.Option(
            help="run on this JSON-RPC dev node (e.g. anvil) with its dev accounts, not in-process"
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print a JSON summary as the last line")
    ] = False,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit",
            help="re-verify every round at the end (as `audit verify`); exit 1 on any mismatch",
        ),
    ] = False,
) -> None:
    """Run a whole market in one process: in-process EVM + local content-addressed store."""
    from backend.simulation.demo import DemoConfig, run_demo

    if attack not in ("sign_flip", "noise", "label_flip", "zero"):
        fail(ValueError(f"unknown attack {attack!r}; use sign_flip, noise, label_flip or zero"))
    if codec not in ("fp32", "int8", "topk"):
        fail(ValueError(f"unknown codec {codec!r}; use fp32, int8 or topk"))
    if attackers > trainers:
        fail(ValueError(f"--attackers ({attackers}) cannot exceed --trainers ({trainers})"))
    cfg = DemoConfig(
        trainers=trainers,
        attackers=attackers,
        rounds=rounds,
        attack=attack,
        scoring=scoring,
        rule=rule,
        codec=codec,
        non_iid_alpha=non_iid,
        store_dir=store,
        seed=seed,
        audit=audit,
    )
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    try:
        with progress:
            task = progress.add_task("starting", total=1)

            def tick(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=max(total, 1))

            from backend.chain.base import Chain

            chain = Chain.rpc(rpc_url, dev_accounts=True) if rpc_url else None
            result = run_demo(cfg, tick, chain=chain)
    except (FedMarketError, ValueError) as exc:
        fail(exc)
        return
    summary = result.summary
    out.print(_rounds_table(result))
    out.print(_payout_table(summary))
    balance = sum(t["reward_wei"] for t in summary["trainers"]) + summary["refund_wei"]
    out.print(
        f"escrow {summary['escrow_wei']} wei + slashed {summary['slashed_to_pool_wei']} wei "
        f"= rewards + refund {balance} wei · store {summary['store']}",
        highlight=False,
    )
    if "audit" in summary:
        a = summary["audit"]
        out.print(
            f"audit: {a['rounds_verified']} round(s) re-verified, {a['mismatches']} mismatch(es)",
            highlight=False,
        )
    if as_json:
        sys.stdout.write(json.dumps(summary, sort_keys=False) + "\n")
    if summary.get("audit", {}).get("mismatches"):
        raise typer.Exit(1)


def _short(addr: str) -> str:
    return f"{addr[:6]}…{addr[-4:]}"


def _rounds_table(result) -> Table:
    trainers = [t["address"] for t in result.summary["trainers"]]
    attacks = {t["address"]: t["attack"] for t in result.summary["trainers"]}
    table = Table(title=f"Job {result.summary['job_id']}: rounds (score, or flag reason)")
    table.add_column("round", justify="right")
    table.add_column("test acc", justify="right")
    table.add_column("val loss", justify="right")
    for a in trainers:
        table.add_column(_short(a) + ("\n" + attacks[a] if attacks[a] else ""), justify="right")
    table.add_column("post gas", justify="right")
    for rp, acc in zip(result.rounds, result.summary["accuracy"], strict=True):
        cells = {
            o.trainer: (f"{o.score:.4f}" if o.reason == 0 else f"[red]{o.reason.label}[/]")
            for o in rp.outcome.outcomes
        }
        table.add_row(
            str(rp.round),
            f"{acc:.3f}",
            f"{rp.outcome.loss_after:.3f}",
            *[cells[a] for a in trainers],
            f"{rp.gas_used:,}",
        )
    return table


def _payout_table(summary: dict) -> Table:
    table = Table(title="Payouts")
    for col in (
        "trainer",
        "attack",
        "score total",
        "reward (ETH)",
        "slashed (ETH)",
        "flagged",
        "reliability",
    ):
        table.add_column(col, justify="left" if col in ("trainer", "attack") else "right")
    for t in summary["trainers"]:
        table.add_row(
            t["address"],
            t["attack"] or "-",
            f"{t['score_total']:.4f}",
            f"{t['reward_wei'] / 1e18:.6f}",
            f"{t['slashed_wei'] / 1e18:.6f}",
            str(t["flagged_rounds"]),
            f"{t['reliability']:.3f}",
        )
    table.add_row("owner refund", "", "", f"{summary['refund_wei'] / 1e18:.6f}", "", "", "")
    return table


# -- role subcommands: each group lives in its own module ---------------------------------
# (one `app.add_typer(...)` line per module, added here)
# (imported here, after `app` and `fail` exist, because the modules use them)
from backend.cli.aggregator import aggregator_app  # noqa: E402
from backend.cli.audit import api_app, audit_app  # noqa: E402
from backend.cli.data import data_app  # noqa: E402
from backend.cli.roles import account_app, deploy_cmd, owner_app, trainer_app  # noqa: E402

app.add_typer(aggregator_app, name="aggregator")
app.add_typer(audit_app, name="audit")
app.add_typer(api_app, name="api")
app.add_typer(account_app, name="account")
app.command("deploy")(deploy_cmd)
app.add_typer(owner_app, name="owner")
app.add_typer(trainer_app, name="trainer")
app.add_typer(data_app, name="data")


devnet_app = typer.Typer(help="A local devnet of real parts: anvil + an IPFS daemon on loopback.")
app.add_typer(devnet_app, name="devnet")


@devnet_app.command("up")
def devnet_up_cmd(
    rpc_port: Annotated[int, typer.Option(help="anvil's port")] = 8545,
    ipfs_port: Annotated[int, typer.Option(help="the IPFS RPC API port")] = 5001,
) -> None:
    """Start anvil and the IPFS daemon (installing the daemon if missing); write the settings."""
    from backend.devtools.devnet import devnet_up
    from backend.protocol.settings import load_settings

    try:
        state = devnet_up(load_settings().home, rpc_port=rpc_port, ipfs_port=ipfs_port)
    except (FedMarketError, OSError) as exc:
        fail(exc)
        return
    out.print(
        f"devnet up: rpc_url={state['rpc_url']} ipfs_api={state['ipfs_api']}", highlight=False
    )


@devnet_app.command("down")
def devnet_down_cmd() -> None:
    """Stop the devnet's processes."""
    from backend.devtools.devnet import devnet_down
    from backend.protocol.settings import load_settings

    stopped = devnet_down(load_settings().home)
    out.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@devnet_app.command("status")
def devnet_status_cmd() -> None:
    """Say what runs and where."""
    from backend.devtools.devnet import devnet_status
    from backend.protocol.settings import load_settings

    out.print_json(json.dumps(devnet_status(load_settings().home)))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
