"""The committed contract artifacts (ABI, bytecode), read as package data: no node or solc needed.

`backend.devtools.compile` writes them; `tests/contracts/test_artifacts.py` proves that
recompiling reproduces them.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def load_artifact(name: str) -> dict[str, Any]:
    """Read the committed artifact of contract ``name`` (no node/solc needed)."""
    resource = resources.files("backend.chain").joinpath("artifacts", f"{name}.json")
    if not resource.is_file():
        raise FileNotFoundError(f"no committed artifact for contract {name!r}")
    data: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return data
