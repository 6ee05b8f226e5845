"""`stdlib`: text for the charlm family, the Python standard library's own source files.

Read from the running interpreter's files (`sysconfig.get_paths()["stdlib"]`, its top-level
`*.py` modules, sorted), never from the network. A row is `context` bytes (float32 0..255) and
the byte that follows (`backend.core.charlm`), so the rows fit every `(x, y)` data path.

Split by module, not by row: each trainer reads its own modules (naturally non-IID: `argparse`
is not `decimal`), and the validation and test splits are modules no trainer has. Every split is
bounded by a byte budget, so its size does not grow with the interpreter's library, and takes
at most `module_bytes` from the start of each of its modules, so that it spans several (a
validation split of one module would measure that module's quirks).
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.core.datasets import Dataset
from backend.core.errors import DataError

DEFAULT_CONTEXT = 32  # bytes per row when nothing else says (`load_dataset("stdlib")`)
# The default budgets (`fedmarket demo --model charlm`, `fedmarket data split stdlib`)
SHARD_BYTES = 16 * 1024  # per trainer
VALIDATION_BYTES = 12 * 1024  # cut into one chunk per round
TEST_BYTES = 8 * 1024
MODULE_BYTES = 4 * 1024  # at most this much from the start of each module


def stdlib_modules() -> list[Path]:
    """The standard library's top-level modules, sorted by name (one clear error if absent)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(root.glob("*.py"))
    if not paths:
        raise DataError(f"no standard-library sources (*.py) under {root}")
    return paths


def byte_rows(text: bytes, context: int) -> Dataset:
    """Rows of `context` bytes with the byte after each: windows starting every `context`
    bytes, so every byte but the first is some position's next-byte target exactly once."""
    arr = np.frombuffer(text, dtype=np.uint8)
    n = (len(arr) - 1) // context
    if n <= 0:
        return Dataset(np.zeros((0, context), np.float32), np.zeros(0, np.int64))
    starts = np.arange(n) * context
    x = arr[starts[:, None] + np.arange(context)].astype(np.float32)
    return Dataset(x, arr[starts + context].astype(np.int64))


@dataclass(frozen=True)
class TextSplit:
    """Trainer shards, validation and test, each with the modules it was read from."""

    shards: list[Dataset]
    validation: Dataset
    test: Dataset
    shard_modules: list[list[str]]
    validation_modules: list[str]
    test_modules: list[str]


def _take(modules: Iterator[Path], budget: int, module_bytes: int) -> tuple[list[str], bytes]:
    """The first `module_bytes` of each next module until `budget` bytes (the last one cut
    at the budget)."""
    names: list[str] = []
    text = b""
    while len(text) < budget:
        path = next(modules, None)
        if path is None:
            raise DataError(
                "the standard library has too little source for these byte budgets; "
                "ask for fewer trainers or fewer bytes each"
            )
        names.append(path.stem)
        text += path.read_bytes()[:module_bytes]
    return names, text[:budget]


def stdlib_split(
    parts: int,
    context: int,
    shard_bytes: int,
    validation_bytes: int,
    test_bytes: int,
    module_bytes: int = MODULE_BYTES,
    seed: int = 0,
) -> TextSplit:
    """Test, then validation, then one shard per trainer, each from its own modules (a seeded
    order of the sorted modules), each cut at its byte budget."""
    if min(parts, context, shard_bytes, validation_bytes, test_bytes, module_bytes) <= 0:
        raise DataError("parts, context and the byte budgets must be positive")
    paths = stdlib_modules()
    modules = iter([paths[i] for i in np.random.default_rng(seed).permutation(len(paths))])
    test_names, test_text = _take(modules, test_bytes, module_bytes)
    val_names, val_text = _take(modules, validation_bytes, module_bytes)
    taken = [_take(modules, shard_bytes, module_bytes) for _ in range(parts)]
    return TextSplit(
        shards=[byte_rows(text, context) for _, text in taken],
        validation=byte_rows(val_text, context),
        test=byte_rows(test_text, context),
        shard_modules=[names for names, _ in taken],
        validation_modules=val_names,
        test_modules=test_names,
    )


def load_stdlib(context: int = DEFAULT_CONTEXT) -> Dataset:
    """Every top-level module's rows, in sorted module order (about 4.7 MB on Python 3.11)."""
    return byte_rows(b"".join(p.read_bytes() for p in stdlib_modules()), context)
