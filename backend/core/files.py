"""Writing a local file all at once or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, blob: bytes) -> None:
    """Write all of `blob` or nothing (a temp file renamed over the target)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
