"""Helpers: jobs with trainers on the embedded chain, for the aggregator service tests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from aggregator.service import AggregatorService
from backend.chain.base import Chain
from backend.chain.market import JobParams, MarketClient, commitment_hash
from backend.core import codec
from backend.core.datasets import Dataset, shard
from backend.core.jobspec import JobSpec, TrainingSpec
from backend.core.models import ModelSpec, build_model, get_weights
from backend.core.sealing import seal
from backend.core.valpackage import ValidationPackage, build_package
from backend.storage import LocalStore, raw_cid, sha256_bytes
from trainer_client.client import PendingReveal, TrainerClient

ETHER = 10**18


@dataclass
class Job:
    job_id: int
    clients: list[TrainerClient]
    owner: object  # LocalAccount
    validation: Dataset  # the plain split: scores, but cannot reveal chunks
    package: ValidationPackage  # what the owner hands the aggregator: it reveals chunks too
    deltas: dict[tuple[int, int], object] = field(default_factory=dict)  # (round, i) -> delta

    @property
    def validation_blob(self) -> bytes:
        """The package file the owner gives the aggregator."""
        return self.package.to_bytes()


def make_job(
    chain: Chain,
    market: MarketClient,
    store: LocalStore,
    aggregator: str,
    digits,
    *,
    trainers: int = 3,
    rounds: int = 2,
    seed: int = 0,
    challenge_window: int = 0,
) -> Job:
    """A job naming `aggregator` (registered with enough bond: see the `aggregator` fixture)
    whose trainers joined; the owner's validation package cuts `digits`' split per round."""
    train, val = digits
    spec = JobSpec(
        model=ModelSpec(hidden=[8], seed=seed), training=TrainingSpec(local_epochs=1, lr=0.1)
    )
    spec_blob = spec.to_bytes()
    initial = codec.encode(get_weights(build_model(spec.model)))
    package = build_package(val, rounds, raw_cid)
    spec_cid, model_cid = (store.put(b) for b in (spec_blob, initial))
    owner = chain.new_funded_account(20 * ETHER)
    params = JobParams(
        aggregator=aggregator,
        stake_required=ETHER,
        rounds=rounds,
        min_trainers=trainers,
        max_trainers=trainers,
        spec_hash=sha256_bytes(spec_blob),
        spec_cid=spec_cid,
        initial_model_hash=sha256_bytes(initial),
        initial_model_cid=model_cid,
        validation_root=package.root,
        challenge_window=challenge_window,
    )
    job_id, _ = market.create_job(owner, params, 10 * ETHER)
    clients = []
    for i, part in enumerate(shard(train, trainers, seed=seed)):
        acct = chain.new_funded_account(3 * ETHER)
        market.register(acct, 2 * ETHER)
        market.join(acct, job_id)
        clients.append(TrainerClient(market, store, acct, part, seed=seed * 100 + i))
    return Job(job_id, clients, owner, val, package)


def commit_raw(client: TrainerClient, job_id: int, round_: int, blob: bytes) -> str:
    """Commit an arbitrary blob (garbage, tampered...) the way a trainer would, and publish it
    sealed; returns the sealed update's cid."""
    cid = client.store.cid_of(seal(blob))
    client.stash(job_id, round_, blob)
    content_hash = sha256_bytes(blob)
    salt = secrets.token_bytes(32)
    commitment = commitment_hash(content_hash, cid, salt, client.address, job_id, round_)
    client.pending[(job_id, round_)] = PendingReveal(
        job_id, round_, content_hash.hex(), cid, salt.hex()
    )
    client.market.commit(client.account, job_id, commitment, announce=cid)
    client.publish(job_id, round_)
    return cid


def play_round(job: Job, round_: int, raw: dict[int, bytes] | None = None, deltas=None) -> None:
    """Every trainer commits (raw blob, given delta, or a freshly trained one), then reveals."""
    raw = raw or {}
    deltas = deltas or {}
    for i, client in enumerate(job.clients):
        if i in raw:
            commit_raw(client, job.job_id, round_, raw[i])
        else:
            c = client.participate(job.job_id, round_, delta=deltas.get(i))
            job.deltas[(round_, i)] = c.delta
    for client in job.clients:
        client.reveal(job.job_id, round_)


def new_service(market, store, account, journal_dir, **kw) -> AggregatorService:
    kw.setdefault("fetch_timeout_s", 0.3)
    kw.setdefault("fetch_retry_s", 0.05)
    kw.setdefault("backoff_base_s", 0.0)
    return AggregatorService(market, store, account, journal_dir=journal_dir, **kw)
