"""What every `fedmarket` command module shares: the consoles, the one-line error exit, and the
progress bars of transfers and training."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from backend.core.errors import FedMarketError

F = TypeVar("F", bound=Callable[..., Any])

# The signing key, the same option for every role's commands.
AccountOpt = Annotated[
    str | None,
    typer.Option(
        "--account",
        "-a",
        envvar="FEDMARKET_ACCOUNT",
        help="keystore account name or address (password: prompt or FEDMARKET_PASSWORD)",
    ),
]

# Piped output gets a fixed width wide enough for the tables (rich would use 80 columns).
out = Console(width=None if sys.stdout.isatty() else 132)
err = Console(stderr=True)


def fail(exc: BaseException) -> None:
    """One line on stderr, exit code 1: the project's errors are meant to be read by people."""
    # escape: messages name TOML tables like [training], which rich would eat as markup
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def guarded(fn: F) -> F:
    """Turn the project's errors (and bad input) into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            fail(ValueError(f"{loc}: {first['msg']}"))
        except (FedMarketError, ValueError) as exc:
            fail(exc)
        except OSError as exc:  # a file the user named: say which and why, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            fail(OSError(f"{where}{exc.strerror or exc}"))

    return wrapper  # type: ignore[return-value]


def password(prompt: str, confirm: bool = False) -> str:
    """FEDMARKET_PASSWORD, else a hidden prompt."""
    env = os.environ.get("FEDMARKET_PASSWORD")
    if env is not None:
        return env
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


def _amount(stage: str, done: int, total: int | None) -> str:
    if stage == "train":
        return f"{done}/{total} steps" if total else f"{done} steps"

    def kib(n: int) -> str:
        return f"{n / 1024:,.1f} KiB"

    return f"{kib(done)} / {kib(total)}" if total is not None else kib(done)


@contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int | None], None]]:
    """Rich progress bars on stderr for a round's stages (download, train, upload).

    Yields the callback TrainerClient and the stores report to: (stage, done, total or None).
    Transient: the bars vanish when done, leaving the one-line reports.
    """
    progress = Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        TextColumn("{task.fields[amount]:>22}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def report(stage: str, done: int, total: int | None) -> None:
        amount = _amount(stage, done, total)
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total, amount=amount)
        progress.update(tasks[stage], completed=done, total=total, amount=amount)

    with progress:
        yield report
