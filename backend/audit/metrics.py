"""Validation loss and accuracy of a job's global models, on the split its owner revealed.

The chain records no accuracy: this evaluates the initial model and every posted one, fetched
from the content store and checked against their on-chain hashes. It imports torch (through the
model code), so the API imports it only when `/jobs/{id}/metrics` is first asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.core import codec
from backend.core.codec import Template
from backend.core.datasets import Dataset, from_npz_bytes
from backend.core.errors import FedMarketError
from backend.core.jobspec import JobSpec
from backend.core.models import evaluate, template_of
from backend.storage import ContentStore, fetch_verified


@dataclass(frozen=True)
class PostedModel:
    """A global model as the indexer recorded it: the round that posted it, its CID and hash."""

    round: int
    cid: str
    hash: str


@dataclass(frozen=True)
class ModelMetric:
    round: int
    validation_loss: float
    validation_accuracy: float


@dataclass(frozen=True)
class JobMetrics:
    """The metrics of one job's models, or why there are none (`available` false)."""

    job_id: int
    available: bool
    reason: str
    initial: ModelMetric | None = None
    rounds: list[ModelMetric] = field(default_factory=list)


def _unhex(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def evaluate_job_models(
    store: ContentStore, job: Mapping[str, Any], posted: Sequence[PostedModel]
) -> JobMetrics:
    """Evaluate the initial model (round 0) and each of `posted` on the revealed validation
    split; `job` is the indexer's job record (spec, validation and initial model references)."""
    job_id = job["job_id"]
    try:
        spec_bytes = fetch_verified(store, job["spec_cid"], _unhex(job["spec_hash"]))
        spec = JobSpec.from_bytes(spec_bytes)
        val = from_npz_bytes(
            fetch_verified(store, job["validation_cid"], _unhex(job["validation_hash"]))
        )
        template = template_of(spec.model)
        initial_model = PostedModel(0, job["initial_model_cid"], job["initial_model_hash"])
        initial = _model_metric(store, spec, template, val, initial_model)
        rounds = [_model_metric(store, spec, template, val, model) for model in posted]
    except (FedMarketError, ValueError) as exc:
        return JobMetrics(job_id=job_id, available=False, reason=f"cannot evaluate: {exc}")
    return JobMetrics(
        job_id=job_id,
        available=True,
        reason="evaluated on the revealed validation split",
        initial=initial,
        rounds=rounds,
    )


def _model_metric(
    store: ContentStore, spec: JobSpec, template: Template, val: Dataset, model: PostedModel
) -> ModelMetric:
    weights = codec.decode(fetch_verified(store, model.cid, _unhex(model.hash)), template)
    loss, acc = evaluate(spec.model, weights, val.x, val.y)
    return ModelMetric(round=model.round, validation_loss=loss, validation_accuracy=acc)
