"""`fedmarket demo`: a whole market in one process on the embedded default.

Deploy → owner creates a job (escrow) → trainers register, join (stake) → R rounds of
train / upload / commit / reveal → aggregator checks, scores, flags, aggregates, posts →
finalize → every trainer claims → the owner takes the refund and reveals the validation split.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregator.round.compute import RoundDriver, RoundReport
from backend.chain.base import Chain
from backend.chain.market import SCORE_ONE, JobParams, MarketClient, validation_commitment
from backend.core import codec
from backend.core.datasets import load_dataset, shard, split_train_validation_test, to_npz_bytes
from backend.core.jobspec import AggregationSpec, JobSpec, TrainingSpec
from backend.core.models import ModelSpec, build_model, evaluate, get_weights
from backend.storage.stores import ContentStore, LocalStore, sha256_bytes
from trainer_client.client import TrainerClient

ETHER = 10**18
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class DemoConfig:
    trainers: int = 5
    attackers: int = 0
    rounds: int = 3
    attack: str = "sign_flip"
    dataset: str = "digits"
    hidden: list[int] = field(default_factory=lambda: [64])
    local_epochs: int = 2
    lr: float = 0.1
    reward_wei: int = 10 * ETHER + 7  # odd on purpose: integer remainders are accounted for
    stake_wei: int = 1 * ETHER
    slash_bps: int = 5_000
    non_iid_alpha: float | None = None
    scoring: str = "loss_gain"
    rule: str = "consensus"
    codec: str = "fp32"  # fp32 | int8 | topk: what trainers send (backend.core.compression)
    seed: int = 0
    store_dir: Path | None = None
    audit: bool = False  # re-verify the job at the end (backend.audit.verify.verify_job)


@dataclass
class DemoResult:
    summary: dict[str, Any]
    rounds: list[RoundReport]
    chain: Chain
    market: MarketClient
    store: ContentStore


def run_demo(
    cfg: DemoConfig, progress: Progress | None = None, chain: Chain | None = None
) -> DemoResult:
    """Run the whole market; on `chain` if given (e.g. a JSON-RPC dev node), else in-process."""
    if not 0 <= cfg.attackers <= cfg.trainers:
        raise ValueError("--attackers must be between 0 and --trainers")
    if cfg.trainers < 1 or cfg.rounds < 1:
        raise ValueError("--trainers and --rounds must be at least 1")
    tick = progress or (lambda stage, done, total: None)
    store_dir = cfg.store_dir or Path(tempfile.mkdtemp(prefix="fedmarket-demo-"))
    store = LocalStore(store_dir)
    chain = chain or Chain.embedded()
    gas: dict[str, int] = {}

    tick("deploying contracts", 0, 1)
    market, deploy = MarketClient.deploy(chain, chain.dev_account(0))
    gas["deploy"] = deploy.gas_used
    owner = chain.new_funded_account(100 * ETHER)
    aggregator = chain.new_funded_account(10 * ETHER)

    # -- the owner: data split, model, spec, validation commitment, job -----------------------
    data = load_dataset(cfg.dataset)
    train, validation, test = split_train_validation_test(data, seed=cfg.seed)
    model_spec = ModelSpec(
        family="mlp",
        input_dim=int(data.x.shape[1]),
        num_classes=int(data.y.max()) + 1,
        hidden=list(cfg.hidden),
        seed=cfg.seed,
    )
    spec = JobSpec(
        name=f"{cfg.dataset} demo",
        dataset=cfg.dataset,
        model=model_spec,
        training=TrainingSpec(local_epochs=cfg.local_epochs, lr=cfg.lr),
        aggregation=AggregationSpec(
            scoring=cfg.scoring,  # type: ignore[arg-type]
            rule={"name": cfg.rule},
        ),
        codec=cfg.codec,
    )  # type: ignore[arg-type]
    spec_blob = spec.to_bytes()
    initial_blob = codec.encode(get_weights(build_model(model_spec)))
    validation_blob = to_npz_bytes(validation)
    spec_cid, model_cid, val_cid = (
        store.put(b) for b in (spec_blob, initial_blob, validation_blob)
    )
    val_hash = sha256_bytes(validation_blob)
    params = JobParams(
        aggregator=aggregator.address,
        stake_required=cfg.stake_wei,
        rounds=cfg.rounds,
        min_trainers=cfg.trainers,
        max_trainers=cfg.trainers,
        spec_hash=sha256_bytes(spec_blob),
        spec_cid=spec_cid,
        initial_model_hash=sha256_bytes(initial_blob),
        initial_model_cid=model_cid,
        validation_commitment=validation_commitment(val_hash, val_cid),
        slash_bps=cfg.slash_bps,
    )
    job_id, created = market.create_job(owner, params, cfg.reward_wei)
    gas["create_job"] = created.gas_used

    # -- trainers: register with stake, join (the last join starts the job) ------------------
    shards = shard(train, cfg.trainers, seed=cfg.seed, non_iid_alpha=cfg.non_iid_alpha)
    clients: list[TrainerClient] = []
    for i in range(cfg.trainers):
        tick("registering trainers", i, cfg.trainers)
        acct = chain.new_funded_account(cfg.stake_wei + 5 * ETHER)
        attack = cfg.attack if i >= cfg.trainers - cfg.attackers else None
        client = TrainerClient(market, store, acct, shards[i], attack=attack, seed=cfg.seed + i)
        market.register(acct, cfg.stake_wei)
        client.spec(job_id)  # checks the shard fits the job's model before staking on it
        market.join(acct, job_id)
        clients.append(client)
    tick("registering trainers", cfg.trainers, cfg.trainers)

    driver = RoundDriver(market, store, aggregator, job_id, validation)
    reports: list[RoundReport] = []
    accuracy: list[float] = []
    submit_gas: list[int] = []
    steps = cfg.rounds * (cfg.trainers + 1)
    for r in range(1, cfg.rounds + 1):
        for k, client in enumerate(clients):
            tick(f"round {r}: local training", (r - 1) * (cfg.trainers + 1) + k, steps)
            contribution = client.participate(job_id, r)
            submit_gas.append(contribution.commit_gas)
        for k, client in enumerate(clients):
            submit_gas[-cfg.trainers + k] += client.reveal(job_id, r)
        tick(f"round {r}: aggregating", r * (cfg.trainers + 1) - 1, steps)
        report = driver.run_round()
        reports.append(report)
        _, acc = evaluate(model_spec, report.outcome.next_weights, test.x, test.y)
        accuracy.append(round(acc, 4))
    tick("settling", steps, steps)

    gas["finalize"] = market.finalize(owner, job_id).gas_used
    rewards: dict[str, int] = {}
    for client in clients:
        expected = market.reward_of(job_id, client.address)
        market.claim(client.account, job_id)
        rewards[client.address] = expected
    job = market.job(job_id)
    market.claim_refund(owner, job_id)
    market.reveal_validation(owner, job_id, val_hash, val_cid)

    slashed: dict[str, int] = {}
    for ev in market.slashes(job_id):
        slashed[ev["trainer"]] = slashed.get(ev["trainer"], 0) + int(ev["amount"])
    paid = {ev["trainer"]: int(ev["reward"]) for ev in market.claims(job_id)}
    trainers_out = []
    for client in clients:
        p = market.participant(job_id, client.address)
        rel_ppm, _ = market.reliability_of(client.address)
        trainers_out.append(
            {
                "address": client.address,
                "attack": client.attack,
                "score_total": int(p["totalScore"]) / SCORE_ONE,
                "reward_wei": paid.get(client.address, 0),
                "slashed_wei": slashed.get(client.address, 0),
                "flagged_rounds": int(p["flaggedRounds"]),
                "reliability": rel_ppm / 1_000_000,
            }
        )
    gas["submit"] = round(sum(submit_gas) / len(submit_gas))
    gas["post_round"] = round(sum(rp.gas_used for rp in reports) / len(reports))
    summary = {
        "job_id": job_id,
        "rounds": cfg.rounds,
        "codec": cfg.codec,
        "accuracy": accuracy,
        "escrow_wei": int(job.reward),
        "refund_wei": int(job.ownerRefund),
        "slashed_to_pool_wei": int(job.slashedPool),
        "trainers": trainers_out,
        "gas": gas,
        "store": str(store_dir),
        "market": market.address,
    }
    if cfg.audit:
        from backend.audit.verify import verify_job

        tick("auditing", 0, 1)
        audit = verify_job(market, store, job_id)
        summary["audit"] = {
            "rounds_verified": audit.rounds_verified,
            "mismatches": len(audit.mismatches) + (1 if audit.error else 0),
        }
    return DemoResult(summary, reports, chain, market, store)
