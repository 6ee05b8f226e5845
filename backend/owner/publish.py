"""What a job is made of, and publishing it: the spec, the initial weights and the validation split.

The spec and the initial weights are public from the start. The validation split stays private:
it is cut into one chunk per round (round r is scored on chunk r only), and only the Merkle root
over the chunks' salted leaves goes on chain (`validationRoot`). The owner keeps — and hands to
the aggregator — a *validation package* (`backend.core.valpackage`: the split plus each chunk's
salt and predicted CID, one `.npz`); chunk r is published and revealed right after round r is
posted, by the aggregator or the owner, so trainers never see a chunk before it is scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.chain.market import JobParams
from backend.core import codec
from backend.core.datasets import Dataset, load_fitting_file
from backend.core.errors import ConfigError, DataError
from backend.core.jobspec import JobSpec
from backend.core.models import build_model, check_inputs, get_weights
from backend.core.valpackage import ValidationPackage, build_package
from backend.storage import ContentStore, Transfer, sha256_bytes


@dataclass(frozen=True)
class JobArtifacts:
    """A job's public blobs, the CIDs the store will give them (known before publishing), and
    the private validation package."""

    spec_blob: bytes
    initial_model_blob: bytes
    validation: ValidationPackage
    spec_cid: str
    initial_model_cid: str

    @property
    def spec_hash(self) -> bytes:
        return sha256_bytes(self.spec_blob)

    @property
    def initial_model_hash(self) -> bytes:
        return sha256_bytes(self.initial_model_blob)

    @property
    def validation_root(self) -> bytes:
        """What createJob records of the validation chunks: it hides each until revealed."""
        return self.validation.root


def load_validation(path: Path, spec: JobSpec) -> Dataset:
    """The owner's validation file, checked against the job's model (errors name the file)."""
    data = load_fitting_file(path, spec.model.input_dim, spec.model.num_classes, 1)
    try:
        check_inputs(spec.model, data.x)
    except DataError as exc:
        raise DataError(f"{path} does not fit the job's model: {exc}") from None
    return data


def prepare_job(
    spec: JobSpec, validation: Dataset, store: ContentStore, *, rounds: int
) -> JobArtifacts:
    """Encode the spec and the model's initial weights, cut the validation split into `rounds`
    chunks with fresh salts; predict every CID."""
    try:
        package = build_package(validation, rounds, store.cid_of)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    spec_blob = spec.to_bytes()
    initial_model_blob = codec.encode(get_weights(build_model(spec.model)))
    return JobArtifacts(
        spec_blob=spec_blob,
        initial_model_blob=initial_model_blob,
        validation=package,
        spec_cid=store.cid_of(spec_blob),
        initial_model_cid=store.cid_of(initial_model_blob),
    )


def job_params(
    artifacts: JobArtifacts,
    *,
    aggregator: str,
    stake_required: int,
    rounds: int,
    min_trainers: int,
    max_trainers: int,
    **terms: int,
) -> JobParams:
    """createJob's arguments: the market terms plus the artifacts' hashes, CIDs and validation
    root. `terms`: JobParams' optional fields (durations, challenge_window, min_reliability_ppm,
    min_reliability_weight, slash_bps, aggregator_bond)."""
    return JobParams(
        aggregator=aggregator,
        stake_required=stake_required,
        rounds=rounds,
        min_trainers=min_trainers,
        max_trainers=max_trainers,
        spec_hash=artifacts.spec_hash,
        spec_cid=artifacts.spec_cid,
        initial_model_hash=artifacts.initial_model_hash,
        initial_model_cid=artifacts.initial_model_cid,
        validation_root=artifacts.validation_root,
        **terms,
    )


def publish_job(
    store: ContentStore, artifacts: JobArtifacts, upload_progress: Transfer | None = None
) -> None:
    """Publish the spec and the initial weights (not the validation chunks) where predicted."""
    published = (
        store.put(artifacts.spec_blob),
        store.put(artifacts.initial_model_blob, upload_progress),
    )
    predicted = (artifacts.spec_cid, artifacts.initial_model_cid)
    if published != predicted:
        raise ConfigError(f"the store returned CIDs {published}, not {predicted}")
