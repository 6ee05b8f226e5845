"""The aggregator's journal: one JSON file per job with the round reports it computed, replayed
or read from the chain, so they survive restarts (`<journal_dir>/job-<id>.json`)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aggregator.round.driver import RoundReport
from aggregator.round.replay import ReplayedRound
from backend.chain.market import RoundPost
from backend.core.errors import Reason

log = logging.getLogger("fedmarket.aggregator")

# One round's journal entry, as /jobs/{id}/rounds serves it.
Entry = dict[str, Any]


class Journal:
    """One JSON file per job with the round reports this aggregator computed or replayed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: int) -> Path:
        return self.root / f"job-{job_id}.json"

    def load(self, job_id: int) -> dict[int, Entry]:
        path = self._path(job_id)
        if not path.exists():
            return {}
        try:
            raw = json.loads(path.read_text())
            return {int(k): v for k, v in raw.get("rounds", {}).items()}
        except (OSError, ValueError) as exc:
            log.warning("journal %s is unreadable (%s); rebuilding it from the chain", path, exc)
            return {}

    def save(self, job_id: int, rounds: Mapping[int, Entry]) -> None:
        body = {"job_id": job_id, "rounds": {str(k): rounds[k] for k in sorted(rounds)}}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh, indent=1)
        os.replace(tmp, self._path(job_id))


def report_entry(report: RoundReport, source: str) -> Entry:
    """The entry of a round this service computed (`source` says how: posted, replayed)."""
    o = report.outcome
    return {
        "round": report.round,
        "source": source,
        "trainers": [t.trainer for t in o.outcomes],
        "reasons": o.reasons,
        "reason_labels": [t.reason.label for t in o.outcomes],
        "details": [t.detail for t in o.outcomes],
        "scores": o.scores_fp,
        "score_values": [t.score for t in o.outcomes],
        "loss_before": o.loss_before,
        "loss_after": o.loss_after,
        "accuracy": o.accuracy_after,
        "model_hash": "0x" + report.model_hash.hex(),
        "model_cid": report.model_cid,
        "gas_used": report.gas_used,
        "tx_hash": report.tx_hash,
        "posted_at": time.time(),
    }


def replayed_entry(job_id: int, replayed: ReplayedRound) -> Entry:
    """The entry of a posted round recomputed by replay; codes and scores are the chain's."""
    post = replayed.post
    report = RoundReport(
        job_id, post.round, replayed.outcome, post.model_cid, post.model_hash, 0, ""
    )
    entry = report_entry(report, "replayed" if replayed.matches else "replayed (mismatch)")
    entry.update(
        tx_hash=post.tx_hash,
        gas_used=None,
        reasons=post.reasons,  # what the chain holds is authoritative
        scores=post.scores,
    )
    return entry


def chain_entry(post: RoundPost, participants: list[str]) -> Entry:
    """The entry of a posted round known only from its event (no validation data to replay)."""
    return {
        "round": post.round,
        "source": "chain",
        "trainers": participants,
        "reasons": post.reasons,
        "reason_labels": [Reason(r).label for r in post.reasons],
        "details": ["" for _ in post.reasons],
        "scores": post.scores,
        "model_hash": "0x" + post.model_hash.hex(),
        "model_cid": post.model_cid,
        "tx_hash": post.tx_hash,
    }
