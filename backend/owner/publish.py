"""What a job is made of, and publishing it: the spec, the initial weights and the validation split.

The spec and the initial weights are public from the start. The validation split stays with the
owner: only its commitment (sha256 and the CID it will have) goes on chain, so the aggregator
cannot be gamed by trainers who see it; it is published when the owner reveals it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.chain.market import JobParams, validation_commitment
from backend.core import codec
from backend.core.datasets import Dataset, load_fitting_file, to_npz_bytes
from backend.core.errors import ConfigError
from backend.core.jobspec import JobSpec
from backend.core.models import build_model, get_weights
from backend.storage import ContentStore, IpfsStore, LocalStore, Transfer, raw_cid, sha256_bytes


def predict_cid(store: ContentStore, blob: bytes) -> str:
    """The CID `store.put(blob)` will return, without publishing the blob."""
    if isinstance(store, IpfsStore):
        return store.hash_only(blob)
    if isinstance(store, LocalStore):
        return raw_cid(blob)
    raise ConfigError(f"cannot predict the CIDs of {store!r}")


@dataclass(frozen=True)
class JobArtifacts:
    """A job's three blobs and the CIDs the store will give them (known before publishing)."""

    spec_blob: bytes
    initial_model_blob: bytes
    validation_blob: bytes
    spec_cid: str
    initial_model_cid: str
    validation_cid: str

    @property
    def spec_hash(self) -> bytes:
        return sha256_bytes(self.spec_blob)

    @property
    def initial_model_hash(self) -> bytes:
        return sha256_bytes(self.initial_model_blob)

    @property
    def validation_hash(self) -> bytes:
        return sha256_bytes(self.validation_blob)

    @property
    def validation_commitment(self) -> bytes:
        """What createJob records of the validation split: it hides the split until revealed."""
        return validation_commitment(self.validation_hash, self.validation_cid)


def load_validation(path: Path, spec: JobSpec) -> Dataset:
    """The owner's validation file, checked against the job's model (errors name the file)."""
    return load_fitting_file(path, spec.model.input_dim, spec.model.num_classes, 1)


def prepare_job(spec: JobSpec, validation: Dataset, store: ContentStore) -> JobArtifacts:
    """Encode the spec, the model's initial weights and the validation split; predict CIDs."""
    validation_blob = to_npz_bytes(validation)
    validation_cid = predict_cid(store, validation_blob)
    spec_blob = spec.to_bytes()
    initial_model_blob = codec.encode(get_weights(build_model(spec.model)))
    return JobArtifacts(
        spec_blob=spec_blob,
        initial_model_blob=initial_model_blob,
        validation_blob=validation_blob,
        spec_cid=predict_cid(store, spec_blob),
        initial_model_cid=predict_cid(store, initial_model_blob),
        validation_cid=validation_cid,
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
    commitment. `terms`: JobParams' optional fields (durations, min_reliability_ppm, slash_bps)."""
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
        validation_commitment=artifacts.validation_commitment,
        **terms,
    )


def publish_job(
    store: ContentStore, artifacts: JobArtifacts, upload_progress: Transfer | None = None
) -> None:
    """Publish the spec and the initial weights (not the validation split) where predicted."""
    published = (
        store.put(artifacts.spec_blob),
        store.put(artifacts.initial_model_blob, upload_progress),
    )
    predicted = (artifacts.spec_cid, artifacts.initial_model_cid)
    if published != predicted:
        raise ConfigError(f"the store returned CIDs {published}, not {predicted}")
