"""The layout rules of the codebase, checked: short functions, no private attribute or private
library module used across modules, a docstring on every package saying what it may import.

The import layers and the absence of cycles are import-linter contracts (`pyproject.toml`,
`[tool.importlinter]`), run by `scripts/test.sh` and by `test_import_contracts_hold` here."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("backend", "aggregator", "trainer_client", "verifier")
MAX_FUNCTION_LINES = 80


def _sources(*tops: str) -> Iterator[Path]:
    """Our Python files under `tops` (not installed npm packages' helper scripts)."""
    for top in tops:
        yield from sorted(p for p in (ROOT / top).rglob("*.py") if "node_modules" not in p.parts)


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_function_over_80_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
        for path in _sources(*PRODUCT, "scripts")
        for fn in _functions(ast.parse(path.read_text()))
        if fn.end_lineno is not None and fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_here(tree: ast.AST) -> set[str]:
    """Private names this module defines: its functions, classes, and attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _private_uses(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    mine = _defined_here(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if any(_private(part) for part in node.module.split(".")):
                yield f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}"
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in mine:
            base = node.value
            if not (isinstance(base, ast.Name) and base.id in {"self", "cls"}):
                yield f"{path.relative_to(ROOT)}:{node.lineno} uses .{node.attr}"


def test_no_private_attribute_used_from_another_module() -> None:
    found = [use for path in _sources(*PRODUCT, "scripts") for use in _private_uses(path)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "package",
    sorted(str(p.parent.relative_to(ROOT)) for p in _sources(*PRODUCT) if p.name == "__init__.py"),
)
def test_every_package_says_what_it_is_and_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc, f"{package}/__init__.py has no docstring"
    top_level = package in PRODUCT
    assert top_level or "import" in doc, f"{package}: the docstring says nothing of its imports"


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is not installed (pip install -e '.[dev]')"
    run = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
