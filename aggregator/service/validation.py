"""The validation data an aggregator scores with: given per job, or `<dir>/<jobId>.npz`,
checked against the commitment the owner made when creating the job."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from aggregator.service.state import JobState
from backend.chain.market import MarketClient, validation_commitment
from backend.core.datasets import Dataset, load_data_file
from backend.storage import raw_cid, sha256_bytes

log = logging.getLogger("fedmarket.aggregator")


class ValidationData:
    """Where each job's validation split comes from, and loading it (once per file)."""

    def __init__(self, given: Mapping[int, Path | Dataset] | None, directory: Path | None) -> None:
        self.given = dict(given or {})
        self.directory = directory

    def source(self, job_id: int) -> Path | Dataset | None:
        if job_id in self.given:
            return self.given[job_id]
        if self.directory is not None:
            path = Path(self.directory) / f"{job_id}.npz"
            if path.exists():
                return path
        return None

    def load(self, state: JobState, market: MarketClient) -> Dataset | None:
        """The job's validation data (None while there is none), noting in `state` where it
        came from and whether it matches the job's commitment."""
        src = self.source(state.job_id)
        if src is None:
            return None
        if isinstance(src, Dataset):
            state.validation = "given in-process"
            return src
        if state.validation_data is not None and state.validation_data[0] == str(src):
            return state.validation_data[1]
        data = load_data_file(Path(src))
        state.validation_data = (str(src), data)
        state.validation = str(src)
        # The owner committed to keccak(sha256(npz), cid) at job creation; a raw-leaves CIDv1
        # of the same bytes reproduces it. A mismatch is reported, not fatal (re-saved files).
        blob = Path(src).read_bytes()
        commitment = validation_commitment(sha256_bytes(blob), raw_cid(blob))
        expected = bytes(market.job(state.job_id).validationCommitment)
        state.validation_matches_commitment = commitment == expected
        if not state.validation_matches_commitment:
            log.warning(
                "job %d: validation file %s does not match the job's validation commitment",
                state.job_id,
                src,
            )
        return data
