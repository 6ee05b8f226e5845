"""`fedmarket simulate`: one job with many simulated trainers (`backend.simulation.scale`),
their training on this process or on Ray; the time of each round, split by where it went."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from backend.cli.common import fail, out
from backend.cli.demo import demo_progress
from backend.core.errors import FedMarketError

TrainersOpt = Annotated[int, typer.Option(min=1, max=1024, help="number of trainers")]
RoundsOpt = Annotated[int, typer.Option(min=1, max=1000, help="training rounds")]
EngineOpt = Annotated[str, typer.Option(help="where the fleet trains: local (this process) | ray")]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        help='with --engine ray: a running cluster ("auto", or "ray://head:10001"); '
        "default: start Ray on this machine"
    ),
]
RowsOpt = Annotated[int, typer.Option(min=1, help="MNIST rows each trainer draws")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print a JSON summary as the last line")]


def simulate_cmd(
    trainers: TrainersOpt = 100,
    rounds: RoundsOpt = 3,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    rows: RowsOpt = 32,
    as_json: JsonOpt = False,
) -> None:
    """Simulate one job with many trainers (MNIST MLP) on the in-process chain and store."""
    from backend.simulation.fleet import ENGINES
    from backend.simulation.scale import ScaleConfig, run_scale

    if engine not in ENGINES:
        fail(ValueError(f"unknown engine {engine!r}; use local or ray"))
    cfg = ScaleConfig(
        trainers=trainers,
        rounds=rounds,
        engine=engine,
        ray_address=ray_address,
        rows_per_trainer=rows,
    )
    try:
        with demo_progress() as tick:
            result = run_scale(cfg, tick)
    except (FedMarketError, ValueError, ConnectionError) as exc:
        fail(exc)
        return
    table = Table(title=f"{trainers} trainers on {engine}: seconds per round")
    for column in ("round", "wall", "training", "chain", "storage", "aggregation", "other", "acc"):
        table.add_column(column, justify="right")
    for r, (wall, split) in enumerate(zip(result.round_s, result.split_rounds, strict=True)):
        parts = [f"{split[k]:.2f}" for k in ("training", "chain", "storage", "aggregation")]
        acc = f"{result.accuracy[r]:.3f}"
        table.add_row(str(r + 1), f"{wall:.2f}", *parts, f"{split['other']:.2f}", acc)
    out.print(table)
    out.print(f"peak memory {result.peak_rss_mb:.0f} MB; gas per trainer {result.gas}")
    if as_json:
        sys.stdout.write(json.dumps(result.as_json()) + "\n")
