"""`fedmarket data ...`: sample data files for trying the roles (a dev tool, not a role).

A real trainer brings its own private file; to try the market on one machine, `data split`
writes a bundled public dataset as the files the role commands take: one shard per trainer,
the owner's validation split and a held-out test split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from backend.cli.common import guarded, out

data_app = typer.Typer(
    help="Sample data files (.npz with arrays x, y) for trying the roles on one machine.",
    no_args_is_help=True,
)


@data_app.command("split")
@guarded
def split_cmd(
    dataset: Annotated[str, typer.Argument(help="digits (8x8, 64 features) | mnist (784)")],
    parts: Annotated[int, typer.Option(min=1, max=1000, help="how many trainer shards")] = 3,
    out_dir: Annotated[Path, typer.Option("--out", help="directory to write into")] = Path("data"),
    non_iid: Annotated[
        float | None, typer.Option(help="Dirichlet alpha for non-IID shards (default: IID)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the split")] = 0,
) -> None:
    """Write shard-1.npz .. shard-N.npz, val.npz and test.npz into --out."""
    from backend.core.datasets import load_dataset, shard, split_train_validation_test, to_npz_bytes

    data = load_dataset(dataset)
    train, validation, test = split_train_validation_test(data, seed=seed)
    files = {f"shard-{i + 1}.npz": s for i, s in enumerate(shard(train, parts, seed, non_iid))}
    files |= {"val.npz": validation, "test.npz": test}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in files.items():
        (out_dir / name).write_bytes(to_npz_bytes(part))
    rows = {name: len(part) for name, part in files.items()}
    out.print(f"wrote {len(files)} files to {out_dir}: {json.dumps(rows)}", highlight=False)
