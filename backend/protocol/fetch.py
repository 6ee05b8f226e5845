"""Verified reads of a job's public artifacts: its spec and a model's weights.

Every role reads these the same way: the pointer (sha256 + CID) from the chain, the bytes from
the store, checked against the sha256 before anything is decoded.
"""

from __future__ import annotations

from backend.chain.market import MarketClient
from backend.core import codec
from backend.core.codec import Tensors
from backend.core.jobspec import JobSpec
from backend.core.models import template_of
from backend.storage import ContentStore, Transfer, fetch_verified


def fetch_job_spec(market: MarketClient, store: ContentStore, job_id: int) -> JobSpec:
    spec_hash, spec_cid = market.spec_pointer(job_id)
    return JobSpec.from_bytes(fetch_verified(store, spec_cid, spec_hash))


def fetch_weights(
    store: ContentStore,
    spec: JobSpec,
    model_hash: bytes,
    cid: str,
    progress: Transfer | None = None,
) -> Tensors:
    """A model blob, verified and decoded against the job's model template."""
    blob = fetch_verified(store, cid, model_hash, progress)
    return codec.decode(blob, template_of(spec.model))


def fetch_current_weights(
    market: MarketClient,
    store: ContentStore,
    spec: JobSpec,
    job_id: int,
    progress: Transfer | None = None,
) -> Tensors:
    model_hash, cid = market.current_model(job_id)
    return fetch_weights(store, spec, model_hash, cid, progress)
