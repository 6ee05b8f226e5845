"""The validation data an aggregator scores with: given per job, or `<dir>/<jobId>.npz`.

What the owner hands over is its validation package (`backend.core.valpackage`: the split plus
each round's chunk salt and CID, one `.npz`). A package is checked against the job's
`validationRoot`; one that matches lets the service reveal each round's chunk right after
posting the round. A mismatch is reported (the split still scores rounds, but nothing is
revealed from it); so is a plain split (x, y only), which cannot be checked or revealed: the
owner must then reveal each chunk itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from aggregator.service.state import JobState
from backend.chain.market import MarketClient
from backend.core.datasets import Dataset, load_data_file
from backend.core.errors import DataError
from backend.core.valpackage import ValidationPackage, read_validation

log = logging.getLogger("fedmarket.aggregator")

Validation = Dataset | ValidationPackage
Source = Path | Dataset | ValidationPackage


class ValidationData:
    """Where each job's validation split comes from, and loading it (once per file)."""

    def __init__(self, given: Mapping[int, Source] | None, directory: Path | None) -> None:
        self.given = dict(given or {})
        self.directory = directory

    def source(self, job_id: int) -> Source | None:
        if job_id in self.given:
            return self.given[job_id]
        if self.directory is not None:
            path = Path(self.directory) / f"{job_id}.npz"
            if path.exists():
                return path
        return None

    def load(self, state: JobState, market: MarketClient) -> Validation | None:
        """The job's validation data (None while there is none): a package that matches the
        job's validation root, else the plain split. Notes in `state` where it came from and
        whether it matches (None: a plain split, which cannot be checked)."""
        src = self.source(state.job_id)
        if src is None:
            return None
        key = src if isinstance(src, Path) else id(src)
        if state.validation_data is not None and state.validation_data[0] == str(key):
            return state.validation_data[1]
        if isinstance(src, Path):
            state.validation = str(src)
            found = _read(src)
        else:
            state.validation = "given in-process"
            found = src
        data = self._checked(state, market, found)
        state.validation_data = (str(key), data)
        return data

    def _checked(self, state: JobState, market: MarketClient, found: Validation) -> Validation:
        if not isinstance(found, ValidationPackage):
            state.validation_matches_commitment = None
            log.warning(
                "job %d: %s is a plain validation split (no chunk salts): it scores rounds, but "
                "cannot be checked against the job's validation root nor reveal chunks (the "
                "owner must reveal each one)",
                state.job_id,
                state.validation,
            )
            return found
        job = market.job(state.job_id)
        try:
            matches = found.rounds == int(job.rounds) and found.root == bytes(job.validationRoot)
        except DataError as exc:
            log.warning("job %d: %s is unusable: %s", state.job_id, state.validation, exc)
            matches = False
        state.validation_matches_commitment = matches
        if matches:
            return found
        log.warning(
            "job %d: validation package %s does not match the job's validation root; scoring "
            "with it, but revealing no chunk from it",
            state.job_id,
            state.validation,
        )
        return found.data


def _read(path: Path) -> Validation:
    """A validation file: a package `.npz`, a plain `.npz` or a `.csv` split."""
    if path.suffix != ".npz":
        return load_data_file(path)
    try:
        return read_validation(path.read_bytes())
    except OSError as exc:
        raise DataError(f"{path}: {exc}") from None
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
