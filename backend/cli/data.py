"""`fedmarket data ...`: sample data files for trying the roles (a dev tool, not a role).

A real trainer brings its own private file; to try the market on one machine, `data split`
writes a bundled public dataset as the files the role commands take: one shard per trainer,
the owner's validation split and a held-out test split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from backend.cli.common import guarded, out

if TYPE_CHECKING:
    from backend.core.datasets import Dataset

data_app = typer.Typer(
    help="Sample data files (.npz with arrays x, y) for trying the roles on one machine.",
    no_args_is_help=True,
)


@data_app.command("split")
@guarded
def split_cmd(
    dataset: Annotated[
        str,
        typer.Argument(
            help="digits (8x8, 64 features) | mnist (784) | stdlib (Python's own sources as "
            "rows of --context bytes, for charlm jobs; split by module)"
        ),
    ],
    parts: Annotated[int, typer.Option(min=1, max=1000, help="how many trainer shards")] = 3,
    out_dir: Annotated[Path, typer.Option("--out", help="directory to write into")] = Path("data"),
    non_iid: Annotated[
        float | None, typer.Option(help="Dirichlet alpha for non-IID shards (default: IID)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the split")] = 0,
    context: Annotated[
        int, typer.Option(min=1, max=4096, help="stdlib: bytes per row (the charlm's input_dim)")
    ] = 32,
) -> None:
    """Write shard-1.npz .. shard-N.npz, val.npz and test.npz into --out."""
    from backend.core.datasets import to_npz_bytes

    shards, validation, test = _split(dataset, parts, non_iid, seed, context)
    files = {f"shard-{i + 1}.npz": s for i, s in enumerate(shards)}
    files |= {"val.npz": validation, "test.npz": test}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in files.items():
        (out_dir / name).write_bytes(to_npz_bytes(part))
    rows = {name: len(part) for name, part in files.items()}
    out.print(f"wrote {len(files)} files to {out_dir}: {json.dumps(rows)}", highlight=False)


def _split(
    dataset: str, parts: int, non_iid: float | None, seed: int, context: int
) -> tuple[list[Dataset], Dataset, Dataset]:
    """(shards, validation, test): rows shuffled, or the stdlib by module (its default budgets)."""
    from backend.core import datasets
    from backend.core.datasets import load_dataset, shard, split_train_validation_test
    from backend.core.errors import ConfigError

    if dataset == "stdlib":
        if non_iid is not None:
            raise ConfigError("--non-iid does not apply to stdlib: each shard has its own modules")
        text = datasets.stdlib_split(
            parts,
            context,
            datasets.STDLIB_SHARD_BYTES,
            datasets.STDLIB_VALIDATION_BYTES,
            datasets.STDLIB_TEST_BYTES,
            seed=seed,
        )
        return text.shards, text.validation, text.test
    data = load_dataset(dataset)
    train, validation, test = split_train_validation_test(data, seed=seed)
    return shard(train, parts, seed, non_iid), validation, test
