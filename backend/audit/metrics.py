"""Validation loss and accuracy of a job's global models, on the validation chunks its owner
revealed so far.

The chain records no accuracy: this evaluates the initial model and every round's model of
record, fetched from the content store and checked against their on-chain hashes, on the union
of the revealed chunks (the revealed part of the validation split: all of it once the last
round's chunk is out). It imports torch (through the model code), so the API imports it only
when `/jobs/{id}/metrics` is first asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
class RevealedChunk:
    """A revealed validation chunk as the indexer recorded it: its round, CID and hash."""

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
    store: ContentStore,
    job: Mapping[str, Any],
    posted: Sequence[PostedModel],
    chunks: Sequence[RevealedChunk],
) -> JobMetrics:
    """Evaluate the initial model (round 0) and each of `posted` on the revealed `chunks`
    together; `job` is the indexer's job record (spec and initial model references)."""
    job_id = job["job_id"]
    if not chunks:
        return JobMetrics(job_id, False, "no validation chunk is revealed yet")
    try:
        spec_bytes = fetch_verified(store, job["spec_cid"], _unhex(job["spec_hash"]))
        spec = JobSpec.from_bytes(spec_bytes)
        parts = [from_npz_bytes(fetch_verified(store, c.cid, _unhex(c.hash))) for c in chunks]
        val = Dataset(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))
        template = template_of(spec.model)
        initial_model = PostedModel(0, job["initial_model_cid"], job["initial_model_hash"])
        initial = _model_metric(store, spec, template, val, initial_model)
        rounds = [_model_metric(store, spec, template, val, model) for model in posted]
    except (FedMarketError, ValueError) as exc:
        return JobMetrics(job_id=job_id, available=False, reason=f"cannot evaluate: {exc}")
    return JobMetrics(
        job_id=job_id,
        available=True,
        reason=f"evaluated on the {len(chunks)} validation chunk(s) revealed so far",
        initial=initial,
        rounds=rounds,
    )


def _model_metric(
    store: ContentStore, spec: JobSpec, template: Template, val: Dataset, model: PostedModel
) -> ModelMetric:
    weights = codec.decode(fetch_verified(store, model.cid, _unhex(model.hash)), template)
    loss, acc = evaluate(spec.model, weights, val.x, val.y)
    return ModelMetric(round=model.round, validation_loss=loss, validation_accuracy=acc)
