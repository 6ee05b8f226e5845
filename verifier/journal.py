"""The verifier's journal: what it checked, challenged and voted, in one JSON file written
atomically *before* each transaction that depends on it (a vote's salt above all), so a restart
never loses a commitment it cannot reveal."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("fedmarket.verifier")


@dataclass
class Vote:
    """This verifier's vote in one dispute."""

    digest: str  # hex
    salt: str  # hex
    committed: bool = False
    revealed: bool = False


@dataclass
class VerifierJournal:
    """State that must survive restarts; `path` is where it lives."""

    path: Path
    checked: dict[str, str] = field(default_factory=dict)  # "job:round" -> digest computed (hex)
    challenged: dict[str, int] = field(default_factory=dict)  # "job:round" -> dispute id
    votes: dict[str, Vote] = field(default_factory=dict)  # dispute id -> vote
    corrected: list[int] = field(default_factory=list)  # disputes this verifier corrected

    @classmethod
    def open(cls, path: Path) -> VerifierJournal:
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"the verifier journal {path} is unreadable ({exc}); move it away "
                "to start afresh (votes already committed cannot then be revealed)"
            ) from exc
        return cls(
            path,
            dict(raw.get("checked", {})),
            {k: int(v) for k, v in raw.get("challenged", {}).items()},
            {k: Vote(**v) for k, v in raw.get("votes", {}).items()},
            [int(d) for d in raw.get("corrected", [])],
        )

    def save(self) -> None:
        body = {
            "checked": self.checked,
            "challenged": self.challenged,
            "votes": {k: asdict(v) for k, v in self.votes.items()},
            "corrected": self.corrected,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh, indent=1)
        os.replace(tmp, self.path)
