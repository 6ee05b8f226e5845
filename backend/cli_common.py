"""What every `fedmarket` command module shares: the consoles and the one-line error exit."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

# Piped output gets a fixed width wide enough for the tables (rich would use 80 columns).
out = Console(width=None if sys.stdout.isatty() else 132)
err = Console(stderr=True)


def fail(exc: BaseException) -> None:
    """One line on stderr, exit code 1: the project's errors are meant to be read by people."""
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(1)
