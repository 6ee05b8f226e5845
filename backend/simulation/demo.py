"""`fedmarket demo`: a whole market in one process on the embedded default.

Deploy → the aggregator registers its bond → owner creates a job (escrow; commits to one
validation chunk per round) → trainers register, join (stake) → R rounds of train / upload /
commit / reveal → aggregator checks, scores on the round's chunk, flags, aggregates, posts, then
reveals that chunk (the round's challenge window opens) and waits for the round to be final
before the next post → finalize → every trainer claims → the owner takes the refund.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from eth_account.signers.local import LocalAccount

from aggregator.round.driver import RoundDriver, RoundReport
from backend.chain.base import Chain
from backend.chain.embedded import embedded_chain
from backend.chain.market import ROLE_AGGREGATOR, JobInfo, MarketClient
from backend.core import datasets
from backend.core.datasets import (
    Dataset,
    load_dataset,
    sample_shards,
    shard,
    split_train_validation_test,
)
from backend.core.jobspec import AggregationSpec, JobSpec, PrivacySpec, TrainingSpec
from backend.core.models import ModelSpec, evaluate
from backend.core.units import ETHER, PPM, score_value
from backend.core.valpackage import ValidationPackage
from backend.owner.lifecycle import create_job, finalize_job, preflight_job, refund_job
from backend.owner.publish import job_params, prepare_job
from backend.simulation.disputes import (
    conservation,
    dispute_summary,
    enlist_verifiers,
    frivolous_challenge,
    job_over,
    lie,
    settle_disputes,
)
from backend.storage import ContentStore, LocalStore
from trainer_client.adversaries import ATTACKS, AdversarialClient
from trainer_client.client import TrainerClient

CODECS = ("fp32", "int8", "topk")
MODELS = ("mlp", "charlm")
DISPUTE_WINDOW = 3600  # seconds of chain time the verifiers get per round in the dispute demos
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class CharLMDemo:
    """`--model charlm`'s job: a byte-level transformer on the standard library's sources,
    each trainer on its own modules. Sized so that the default demo (5 trainers, 3 rounds)
    runs in about a minute on two CPU cores (README, "A language model")."""

    context: int = 32
    width: int = 64
    depth: int = 2
    heads: int = 4
    shard_bytes: int = datasets.STDLIB_SHARD_BYTES  # per trainer
    validation_bytes: int = datasets.STDLIB_VALIDATION_BYTES  # one chunk per round
    test_bytes: int = datasets.STDLIB_TEST_BYTES
    module_bytes: int = datasets.STDLIB_MODULE_BYTES  # at most this much of each module
    local_epochs: int = 2
    # plain SGD on a transformer: small batches with momentum learn the most per byte read
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 8


@dataclass
class DemoConfig:
    trainers: int = 5
    attackers: int = 0
    rounds: int = 3
    attack: str = "sign_flip"
    model: str = "mlp"  # mlp (on `dataset`) | charlm (on the stdlib's sources, `charlm`)
    dataset: str = "digits"
    charlm: CharLMDemo = field(default_factory=CharLMDemo)
    hidden: list[int] = field(default_factory=lambda: [64])
    local_epochs: int = 2
    lr: float = 0.1
    reward_wei: int = 10 * ETHER + 7  # odd on purpose: integer remainders are accounted for
    stake_wei: int = 1 * ETHER
    slash_bps: int = 5_000
    non_iid_alpha: float | None = None
    rows_per_trainer: int | None = None  # None: disjoint shards; n: n rows each, overlapping
    scoring: str = "information"
    rule: str = "consensus"
    codec: str = "fp32"  # fp32 | int8 | topk: what trainers send (backend.core.compression)
    seed: int = 0
    challenge_window: int = 0  # seconds; the demo's clock jumps over a longer one
    lying_aggregator: bool = False  # round 2 flags an honest trainer; verifiers overturn it
    frivolous_challenge: bool = False  # an honest round 2 is challenged with a wrong digest
    privacy: PrivacySpec | None = None  # DP-SGD asked of trainers (backend.core.privacy)

    @property
    def disputes(self) -> bool:
        """Whether verifiers take part (either dispute scenario)."""
        return self.lying_aggregator or self.frivolous_challenge

    store_dir: Path | None = None
    audit: bool = False  # re-verify the job at the end (backend.audit.verify.verify_job)


@dataclass
class DemoResult:
    summary: dict[str, Any]
    rounds: list[RoundReport]
    chain: Chain
    market: MarketClient
    store: ContentStore
    # Wall seconds of each phase: setup (deploy, job, registrations), rounds, settle (finalize
    # and claims) and report (summaries, disputes, audit).
    phase_s: dict[str, float] = field(default_factory=dict)


def check_demo_options(
    attack: str,
    codec: str,
    trainers: int,
    attackers: int,
    model: str = "mlp",
    non_iid_alpha: float | None = None,
) -> None:
    """The checks of `fedmarket demo`'s flags, in the order it reports them (ValueError)."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; use sign_flip, noise, label_flip or zero")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; use fp32, int8 or topk")
    if attackers > trainers:
        raise ValueError(f"--attackers ({attackers}) cannot exceed --trainers ({trainers})")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; use mlp or charlm")
    if model == "charlm" and non_iid_alpha is not None:
        raise ValueError("--non-iid is for the mlp demo: charlm's trainers read their own modules")


@dataclass
class DemoMarket:
    """The market's parties as the demo plays them."""

    chain: Chain
    market: MarketClient
    store: LocalStore
    owner: LocalAccount
    aggregator: LocalAccount
    verifiers: list[Any] = field(default_factory=list)  # VerifierService (dispute scenarios)


@dataclass
class DemoJob:
    """The posted job and the owner's data split (its validation package: the split with the
    salts and CIDs of its per-round chunks, which the owner gives the aggregator)."""

    job_id: int
    spec: JobSpec
    shards: list[Dataset]  # one per trainer
    validation: ValidationPackage
    test: Dataset


@dataclass
class RoundsRun:
    reports: list[RoundReport] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    submit_gas: list[int] = field(default_factory=list)


def deploy(chain: Chain, store: LocalStore, gas: dict[str, int], bond_wei: int) -> DemoMarket:
    """Deploy the contracts; fund the owner and the aggregator, which registers `bond_wei` of
    bond (a job can name it only if its free bond covers the job's, by default the reward)."""
    market, deployed = MarketClient.deploy(chain, chain.dev_account(0))
    gas["deploy"] = deployed.gas_used
    owner = chain.new_funded_account(100 * ETHER)
    aggregator = chain.new_funded_account(bond_wei + 10 * ETHER)
    market.register_role(aggregator, ROLE_AGGREGATOR, bond_wei)
    return DemoMarket(chain, market, store, owner, aggregator)


def demo_spec(cfg: DemoConfig, data: Dataset) -> JobSpec:
    """The job the demo's owner posts: an MLP on `cfg.dataset`, or charlm on `stdlib`."""
    if cfg.model == "charlm":
        return charlm_spec(cfg)
    model_spec = ModelSpec(
        family="mlp",
        input_dim=int(data.x.shape[1]),
        num_classes=int(data.y.max()) + 1,
        hidden=list(cfg.hidden),
        seed=cfg.seed,
    )
    return JobSpec(
        name=f"{cfg.dataset} demo",
        dataset=cfg.dataset,
        model=model_spec,
        training=TrainingSpec(local_epochs=cfg.local_epochs, lr=cfg.lr),
        aggregation=AggregationSpec(
            scoring=cfg.scoring,  # type: ignore[arg-type]
            rule={"name": cfg.rule},
        ),
        codec=cfg.codec,  # type: ignore[arg-type]
        privacy=cfg.privacy,
    )


def charlm_spec(cfg: DemoConfig) -> JobSpec:
    """charlm (`CharLMDemo`'s shape and training) on the standard library's sources."""
    lm = cfg.charlm
    model_spec = ModelSpec(
        family="charlm",
        input_dim=lm.context,
        num_classes=256,
        width=lm.width,
        depth=lm.depth,
        heads=lm.heads,
        seed=cfg.seed,
    )
    training = TrainingSpec(
        local_epochs=lm.local_epochs, lr=lm.lr, momentum=lm.momentum, batch_size=lm.batch_size
    )
    return JobSpec(
        name="stdlib charlm demo",
        dataset="stdlib",
        model=model_spec,
        training=training,
        aggregation=AggregationSpec(
            scoring=cfg.scoring,  # type: ignore[arg-type]
            rule={"name": cfg.rule},
        ),
        codec=cfg.codec,  # type: ignore[arg-type]
    )


def split_data(cfg: DemoConfig) -> tuple[list[Dataset], Dataset, Dataset, JobSpec]:
    """(trainer shards, validation, test, the job's spec). The mlp demo shuffles rows (IID, or
    Dirichlet shards with `non_iid_alpha`); charlm splits the stdlib by module."""
    if cfg.model == "charlm":
        lm = cfg.charlm
        text = datasets.stdlib_split(
            cfg.trainers,
            lm.context,
            lm.shard_bytes,
            lm.validation_bytes,
            lm.test_bytes,
            module_bytes=lm.module_bytes,
            seed=cfg.seed,
        )
        return text.shards, text.validation, text.test, charlm_spec(cfg)
    data = load_dataset(cfg.dataset)
    train, validation, test = split_train_validation_test(data, seed=cfg.seed)
    if cfg.rows_per_trainer is not None:
        shards = sample_shards(train, cfg.trainers, cfg.rows_per_trainer, seed=cfg.seed)
    else:
        shards = shard(train, cfg.trainers, seed=cfg.seed, non_iid_alpha=cfg.non_iid_alpha)
    return shards, validation, test, demo_spec(cfg, data)


def post_job(cfg: DemoConfig, demo: DemoMarket, gas: dict[str, int]) -> DemoJob:
    """The owner splits the data, publishes spec and weights, commits to the validation chunks
    and creates the job, through `backend.owner` as `fedmarket owner create-job` does."""
    shards, validation, test, spec = split_data(cfg)
    artifacts = prepare_job(spec, validation, demo.store, rounds=cfg.rounds)
    params = job_params(
        artifacts,
        aggregator=demo.aggregator.address,
        stake_required=cfg.stake_wei,
        rounds=cfg.rounds,
        min_trainers=cfg.trainers,
        max_trainers=cfg.trainers,
        slash_bps=cfg.slash_bps,
        challenge_window=cfg.challenge_window or (DISPUTE_WINDOW if cfg.disputes else 0),
    )
    preflight_job(demo.market, demo.owner, params, cfg.reward_wei)
    job_id, created = create_job(
        demo.market, demo.store, demo.owner, artifacts, params, cfg.reward_wei
    )
    gas["create_job"] = created.gas_used
    return DemoJob(job_id, spec, shards, artifacts.validation, test)


def register_trainers(
    cfg: DemoConfig, demo: DemoMarket, job: DemoJob, tick: Progress
) -> list[TrainerClient]:
    """Trainers register with stake and join; the last `cfg.attackers` are adversaries."""
    shards = job.shards
    clients: list[TrainerClient] = []
    for i in range(cfg.trainers):
        tick("registering trainers", i, cfg.trainers)
        acct = demo.chain.new_funded_account(cfg.stake_wei + 5 * ETHER)
        seed = cfg.seed + i
        if i >= cfg.trainers - cfg.attackers:
            client: TrainerClient = AdversarialClient(
                demo.market, demo.store, acct, shards[i], attack=cfg.attack, seed=seed, dp_seed=seed
            )
        else:
            client = TrainerClient(
                demo.market, demo.store, acct, shards[i], seed=seed, dp_seed=seed
            )
        demo.market.register(acct, cfg.stake_wei)
        client.spec(job.job_id)  # checks the shard fits the job's model before staking on it
        demo.market.join(acct, job.job_id)
        clients.append(client)
    tick("registering trainers", cfg.trainers, cfg.trainers)
    return clients


def wait_until_final(demo: DemoMarket, driver: RoundDriver) -> None:
    """Let the last posted round become final: its chunk is revealed, so only the challenge
    window can remain; the demo's clock jumps over it (nobody challenges in the demo)."""
    reason = driver.not_final_reason()
    if reason is None:
        return
    final_at = int(demo.market.job(driver.job_id).finalAt)
    if final_at == 0:  # the aggregator reveals right after posting: cannot happen here
        raise RuntimeError(f"job {driver.job_id}: {reason}")
    demo.chain.advance_time(max(final_at - demo.chain.now(), 0) + 1)


def run_rounds(
    cfg: DemoConfig, demo: DemoMarket, job: DemoJob, clients: list[TrainerClient], tick: Progress
) -> RoundsRun:
    """Every round: all trainers commit (publishing their updates sealed), the aggregator
    snapshots the sealed updates, the trainers reveal; once the previous round is final the
    aggregator posts, then reveals the round's validation chunk; test accuracy. In the dispute
    scenarios the verifiers then check the round (and challenge, vote, correct); a correction
    ends the job."""
    driver = RoundDriver(demo.market, demo.store, demo.aggregator, job.job_id, job.validation)
    run = RoundsRun()
    steps = cfg.rounds * (cfg.trainers + 1)
    for r in range(1, cfg.rounds + 1):
        for k, client in enumerate(clients):
            tick(f"round {r}: local training", (r - 1) * (cfg.trainers + 1) + k, steps)
            run.submit_gas.append(client.participate(job.job_id, r).commit_gas)
        driver.collect_sealed()  # the commit phase closed: snapshot the sealed updates
        for k, client in enumerate(clients):
            run.submit_gas[-cfg.trainers + k] += client.reveal(job.job_id, r)
        tick(f"round {r}: aggregating", r * (cfg.trainers + 1) - 1, steps)
        wait_until_final(demo, driver)
        pending = driver.compute()
        if cfg.lying_aggregator and r == 2:
            pending = lie(pending, honest_victim(cfg, clients))
        report = driver.post(pending)
        driver.reveal_chunk()  # as the aggregator service does, right after the post
        run.reports.append(report)
        _, acc = evaluate(job.spec.model, report.outcome.next_weights, job.test.x, job.test.y)
        run.accuracy.append(round(acc, 4))
        run.val_loss.append(round(report.outcome.loss_after, 4))
        if cfg.disputes:
            tick(f"round {r}: verifiers", r * (cfg.trainers + 1) - 1, steps)
            if cfg.frivolous_challenge and r == 2:
                frivolous_challenge(demo.verifiers[0], job.job_id, r)
            settle_disputes(demo.chain, demo.market, demo.verifiers)
            if job_over(demo.market, job.job_id):
                break
    tick("settling", steps, steps)
    if not job_over(demo.market, job.job_id):
        wait_until_final(demo, driver)
    return run


def honest_victim(cfg: DemoConfig, clients: list[TrainerClient]) -> str:
    """The honest trainer the lying aggregator flags: the first one."""
    honest = clients[: cfg.trainers - cfg.attackers]
    if not honest:
        raise ValueError("--lying-aggregator needs at least one honest trainer")
    return honest[0].address


def settle(
    demo: DemoMarket, job: DemoJob, clients: list[TrainerClient], gas: dict[str, int]
) -> JobInfo:
    """Finalize (every round is final by now), every trainer claims, the owner takes the
    refund. Returns the job as it stood before the refund (escrow, refund, slashed pool)."""
    if not job_over(demo.market, job.job_id):  # a correction already ended it
        gas["finalize"] = finalize_job(demo.market, demo.owner, job.job_id).gas_used
    for client in clients:
        demo.market.claim(client.account, job.job_id)
    settled = demo.market.job(job.job_id)
    refund_job(demo.market, demo.owner, job.job_id)
    return settled


def trainer_summaries(
    demo: DemoMarket, job_id: int, clients: list[TrainerClient]
) -> list[dict[str, Any]]:
    """Per trainer: attack, score, reward, slashed stake, flagged rounds, reliability."""
    slashed: dict[str, int] = {}
    for ev in demo.market.slashes(job_id):
        slashed[ev["trainer"]] = slashed.get(ev["trainer"], 0) + int(ev["amount"])
    for ev in demo.market.job_events(job_id, "SlashReversed"):  # a dispute gave it back
        slashed[ev["trainer"]] -= int(ev["amount"])
    paid = {ev["trainer"]: int(ev["reward"]) for ev in demo.market.claims(job_id)}
    summaries = []
    for client in clients:
        p = demo.market.participant(job_id, client.address)
        rel_ppm = demo.market.reliability_of(client.address).ppm
        summaries.append(
            {
                "address": client.address,
                "attack": client.attack if isinstance(client, AdversarialClient) else None,
                "score_total": score_value(p["totalScore"]),
                "reward_wei": paid.get(client.address, 0),
                "slashed_wei": slashed.get(client.address, 0),
                "flagged_rounds": int(p["flaggedRounds"]),
                "reliability": rel_ppm / PPM,
            }
        )
    return summaries


def summarise(
    cfg: DemoConfig,
    demo: DemoMarket,
    settled: JobInfo,
    trainers: list[dict[str, Any]],
    run: RoundsRun,
    gas: dict[str, int],
) -> dict[str, Any]:
    """The `--json` summary (its keys and their order are part of the interface).

    `accuracy` is the test split's (per next byte for charlm); `val_loss` the aggregated
    model's loss on the round's validation chunk, as the aggregator posted it (charlm adds its
    perplexity, `val_ppl`)."""
    gas["submit"] = round(sum(run.submit_gas) / len(run.submit_gas))
    gas["post_round"] = round(sum(rp.gas_used for rp in run.reports) / len(run.reports))
    model: dict[str, Any] = {"accuracy": run.accuracy, "val_loss": run.val_loss}
    if cfg.model == "charlm":
        model["val_ppl"] = [round(math.exp(v), 3) for v in run.val_loss]
    return {
        "job_id": settled.job_id,
        "rounds": cfg.rounds,
        "codec": cfg.codec,
        **model,
        "escrow_wei": int(settled.reward),
        "refund_wei": int(settled.ownerRefund),
        "slashed_to_pool_wei": int(settled.slashedPool),
        "trainers": trainers,
        "gas": gas,
        "store": str(demo.store.root),
        "market": demo.market.address,
    }


def audit(demo: DemoMarket, job_id: int, tick: Progress) -> dict[str, int]:
    """Re-verify every round as `fedmarket audit verify` does."""
    from backend.audit.verify import verify_job

    tick("auditing", 0, 1)
    result = verify_job(demo.market, demo.store, job_id)
    return {
        "rounds_verified": result.rounds_verified,
        "mismatches": len(result.mismatches) + (1 if result.error else 0),
    }


@contextmanager
def torch_threads(model: str) -> Iterator[None]:
    """One intra-op thread for charlm while the demo runs, then as it was.

    Its matrices (rows of 32 bytes x 64 wide) are too small to gain from a second thread, and
    on a busy machine the threads' spin-waits cost several times the work: the default demo
    used 257 s of CPU (418 s wall) with two threads on two shared cores, 53 s with one. The
    other families keep torch's default, which their pinned golden summaries ran with."""
    threads = torch.get_num_threads()
    if model == "charlm":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_demo(
    cfg: DemoConfig, progress: Progress | None = None, chain: Chain | None = None
) -> DemoResult:
    """Run the whole market; on `chain` if given (e.g. a JSON-RPC dev node), else in-process."""
    if not 0 <= cfg.attackers <= cfg.trainers:
        raise ValueError("--attackers must be between 0 and --trainers")
    if cfg.trainers < 1 or cfg.rounds < 1:
        raise ValueError("--trainers and --rounds must be at least 1")
    with torch_threads(cfg.model):
        return _run_demo(cfg, progress, chain)


def _run_demo(cfg: DemoConfig, progress: Progress | None, chain: Chain | None) -> DemoResult:
    tick = progress or (lambda stage, done, total: None)
    store_dir = cfg.store_dir or Path(tempfile.mkdtemp(prefix="fedmarket-demo-"))
    gas: dict[str, int] = {}
    clock = _PhaseClock()
    tick("deploying contracts", 0, 1)
    demo = deploy(chain or embedded_chain(), LocalStore(store_dir), gas, cfg.reward_wei)
    if cfg.disputes:
        demo.verifiers = enlist_verifiers(demo.chain, demo.market, demo.store, store_dir)
    job = post_job(cfg, demo, gas)
    clients = register_trainers(cfg, demo, job, tick)
    clock.lap("setup")
    run = run_rounds(cfg, demo, job, clients, tick)
    clock.lap("rounds")
    settled = settle(demo, job, clients, gas)
    clock.lap("settle")
    trainers = trainer_summaries(demo, job.job_id, clients)
    summary = summarise(cfg, demo, settled, trainers, run, gas)
    if cfg.disputes:
        summary["disputes"] = dispute_summary(demo.market, job.job_id)
        accounts = [demo.owner.address, demo.aggregator.address]
        accounts += [c.address for c in clients] + [v.address for v in demo.verifiers]
        held = conservation(demo.market, job.job_id, accounts)
        summary["conservation"] = {
            "contract_wei": held.contract_wei,
            "vault_wei": held.vault_wei,
            "job_unpaid_wei": held.job_unpaid_wei,
            "holds": held.holds,
        }
    if cfg.audit:
        summary["audit"] = audit(demo, job.job_id, tick)
    clock.lap("report")
    return DemoResult(summary, run.reports, demo.chain, demo.market, demo.store, clock.laps)


class _PhaseClock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
