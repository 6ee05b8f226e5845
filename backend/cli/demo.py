"""`fedmarket demo`: flags in, `backend.simulation.demo` runs the market, tables out."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backend.cli.common import err, fail, out
from backend.core.errors import FedMarketError

if TYPE_CHECKING:
    from backend.simulation.demo import DemoResult


# The demo's options, one alias each (their help is what `fedmarket demo --help` shows).
TrainersOpt = Annotated[int, typer.Option(min=1, max=1024, help="number of trainers")]
AttackersOpt = Annotated[int, typer.Option(min=0, help="how many of them are malicious")]
RoundsOpt = Annotated[int, typer.Option(min=1, max=1000, help="training rounds")]
AttackOpt = Annotated[str, typer.Option(help="sign_flip | noise | label_flip | zero")]
ModelOpt = Annotated[
    str,
    typer.Option(
        help="mlp (on scikit-learn's digits) | charlm (a byte-level transformer on the Python "
        "standard library's sources, each trainer on its own modules)"
    ),
]
ScoringOpt = Annotated[str, typer.Option(help="information | loss_gain | loo | shapley")]
RuleOpt = Annotated[
    str,
    typer.Option(
        help="outlier rule: consensus | cosine_norm | multi_krum | median | trimmed_mean"
        " | norm_bound | cosine"
    ),
]
CodecOpt = Annotated[
    str,
    typer.Option(
        help="what trainers send: fp32 | int8 (4x smaller) | topk (25x smaller, error feedback)"
    ),
]
NonIidOpt = Annotated[
    float | None, typer.Option(help="Dirichlet alpha for non-IID shards (default: IID)")
]
StoreOpt = Annotated[
    Path | None, typer.Option(help="directory of the local content store (default: a temp dir)")
]
SeedOpt = Annotated[int, typer.Option(help="seed for data split, shards and models")]
RpcUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="run on this JSON-RPC dev node (e.g. anvil) with its dev accounts, not in-process"
    ),
]
JsonSummaryOpt = Annotated[
    bool, typer.Option("--json", help="print a JSON summary as the last line")
]
AuditOpt = Annotated[
    bool,
    typer.Option(
        "--audit",
        help="re-verify every round at the end (as `audit verify`); exit 1 on any mismatch",
    ),
]


LyingOpt = Annotated[
    bool,
    typer.Option(
        "--lying-aggregator",
        help="round 2's aggregator flags an honest trainer; in-process verifiers challenge and "
        "a committee overturns the round",
    ),
]
FrivolousOpt = Annotated[
    bool,
    typer.Option(
        "--frivolous-challenge",
        help="an honest round 2 is challenged with a wrong digest; the committee upholds it",
    ),
]


def demo_cmd(
    trainers: TrainersOpt = 5,
    attackers: AttackersOpt = 0,
    rounds: RoundsOpt = 3,
    attack: AttackOpt = "sign_flip",
    model: ModelOpt = "mlp",
    scoring: ScoringOpt = "information",
    rule: RuleOpt = "consensus",
    codec: CodecOpt = "fp32",
    non_iid: NonIidOpt = None,
    store: StoreOpt = None,
    seed: SeedOpt = 0,
    rpc_url: RpcUrlOpt = None,
    as_json: JsonSummaryOpt = False,
    audit: AuditOpt = False,
    lying_aggregator: LyingOpt = False,
    frivolous_challenge: FrivolousOpt = False,
) -> None:
    """Run a whole market in one process: in-process EVM + local content-addressed store."""
    from backend.simulation.demo import DemoConfig, check_demo_options, run_demo

    try:
        check_demo_options(attack, codec, trainers, attackers, model, non_iid)
    except ValueError as exc:
        fail(exc)
    cfg = DemoConfig(
        trainers=trainers,
        attackers=attackers,
        rounds=rounds,
        attack=attack,
        model=model,
        dataset="stdlib" if model == "charlm" else "digits",
        scoring=scoring,
        rule=rule,
        codec=codec,
        non_iid_alpha=non_iid,
        store_dir=store,
        seed=seed,
        audit=audit,
        lying_aggregator=lying_aggregator,
        frivolous_challenge=frivolous_challenge,
    )
    try:
        with demo_progress() as tick:
            from backend.chain.rpc import rpc_chain

            chain = rpc_chain(rpc_url, dev_accounts=True) if rpc_url else None
            result = run_demo(cfg, tick, chain=chain)
    except (FedMarketError, ValueError) as exc:
        fail(exc)
        return
    print_demo(result)
    if as_json:
        sys.stdout.write(json.dumps(result.summary, sort_keys=False) + "\n")
    if result.summary.get("audit", {}).get("mismatches"):
        raise typer.Exit(1)


@contextmanager
def demo_progress() -> Iterator[Callable[[str, int, int], None]]:
    """One transient progress bar on stderr; yields the demo's (stage, done, total) callback."""
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task("starting", total=1)

        def tick(stage: str, done: int, total: int) -> None:
            progress.update(task, description=stage, completed=done, total=max(total, 1))

        yield tick


def print_demo(result: DemoResult) -> None:
    """The rounds and payouts tables, the escrow balance and the audit line."""
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


def _short(addr: str) -> str:
    """0x1234…abcd: an address short enough for a column title."""
    return f"{addr[:6]}…{addr[-4:]}"


def _rounds_table(result: DemoResult) -> Table:
    trainers = [t["address"] for t in result.summary["trainers"]]
    attacks = {t["address"]: t["attack"] for t in result.summary["trainers"]}
    table = Table(title=f"Job {result.summary['job_id']}: rounds (score, or flag reason)")
    table.add_column("round", justify="right")
    # charlm's accuracy is per next byte, and its loss reads better as a perplexity
    per_byte = "val_ppl" in result.summary
    table.add_column("test acc\n(next byte)" if per_byte else "test acc", justify="right")
    table.add_column("val loss", justify="right")
    if per_byte:
        table.add_column("val ppl", justify="right")
    for a in trainers:
        table.add_column(_short(a) + ("\n" + attacks[a] if attacks[a] else ""), justify="right")
    table.add_column("post gas", justify="right")
    ppl = result.summary.get("val_ppl", [])
    for k, (rp, acc) in enumerate(zip(result.rounds, result.summary["accuracy"], strict=True)):
        cells = {
            o.trainer: (f"{o.score:.4f}" if o.reason == 0 else f"[red]{o.reason.label}[/]")
            for o in rp.outcome.outcomes
        }
        table.add_row(
            str(rp.round),
            f"{acc:.3f}",
            f"{rp.outcome.loss_after:.3f}",
            *([f"{ppl[k]:.2f}"] if per_byte else []),
            *[cells[a] for a in trainers],
            f"{rp.gas_used:,}",
        )
    return table


def _payout_table(summary: dict[str, Any]) -> Table:
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
