"""A market with many simulated trainers (issue 16): `fedmarket simulate` and
`scripts/bench_scale.py`.

The job is the demo's (MNIST MLP by default), through the same owner, trainer, aggregator and
contract code; what differs is the fleet. Its local training runs on an engine
(`backend.simulation.fleet`: here, or on Ray), while the chain, the store and the aggregator
run in this process, each timed. Every round's wall time is split into:
- training: the fleet's local training, plus each trainer's update encoding and sealing;
- chain: every call to the chain (transactions, views, log reads), whoever makes it;
- storage: every store operation (sealed updates, models, validation chunks);
- aggregation: the aggregator's round computation and post, less the chain and storage calls
  inside them;
- other: the rest (the simulation's own bookkeeping).
Times are exclusive: a storage call made during aggregation counts as storage.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregator.round.driver import RoundDriver
from backend.chain.embedded import embedded_chain
from backend.core.models import evaluate, template_of
from backend.core.training import pseudo_gradient
from backend.owner.lifecycle import refund_job
from backend.simulation.demo import (
    DemoConfig,
    DemoJob,
    DemoMarket,
    deploy,
    post_job,
    register_trainers,
    wait_until_final,
)
from backend.simulation.fleet import Engine, TrainTask, make_engine
from backend.storage import LocalStore
from trainer_client.client import TrainerClient

SPLIT = ("training", "chain", "storage", "aggregation", "other")
CHAIN_CALLS = ("transact", "call", "new_logs", "deploy", "advance_time", "send_value", "now")
STORE_CALLS = ("put", "get", "has", "cid_of")
Progress = Callable[[str, int, int], None]


@dataclass
class ScaleConfig:
    trainers: int = 1000
    rounds: int = 3
    dataset: str = "mnist"
    hidden: list[int] = field(default_factory=lambda: [64])
    local_epochs: int = 1
    rows_per_trainer: int = 32  # drawn from the training split for each trainer (overlapping)
    engine: str = "local"  # local | ray
    ray_address: str | None = None  # None: a local Ray; "auto" or "ray://host:port": a cluster
    ray_cpus: int | None = None
    seed: int = 0
    store_dir: Path | None = None

    def demo(self) -> DemoConfig:
        return DemoConfig(
            trainers=self.trainers,
            rounds=self.rounds,
            dataset=self.dataset,
            hidden=list(self.hidden),
            local_epochs=self.local_epochs,
            rows_per_trainer=self.rows_per_trainer,
            seed=self.seed,
            store_dir=self.store_dir,
        )


@dataclass
class ScaleResult:
    """What `bench_scale.py --json` prints (its keys are the issue's schema, plus
    `split_rounds`, `gas_total`, `accuracy`, `update_bytes` and `engine`)."""

    trainers: int
    rounds: int
    round_s: list[float]
    split_s: dict[str, float]
    split_rounds: list[dict[str, float]]
    peak_rss_mb: float
    gas: dict[str, int]
    gas_total: dict[str, int]
    accuracy: list[float]
    update_bytes: int
    engine: str

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Stopwatch:
    """Exclusive wall time per section: entering a section pauses the one it interrupts."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(SPLIT, 0.0)
        self._stack: list[str] = []
        self._since = time.perf_counter()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        self._switch()
        self._stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self.section(name):
                return fn(*args, **kwargs)

        return call

    def instrument(self, obj: Any, name: str, methods: tuple[str, ...]) -> None:
        """Time `obj`'s `methods` (bound methods replaced on the instance) as `name`."""
        for method in methods:
            if hasattr(obj, method):
                setattr(obj, method, self.timed(name, getattr(obj, method)))

    def snapshot(self) -> dict[str, float]:
        self._switch()
        return dict(self.totals)

    def _switch(self) -> None:
        now = time.perf_counter()
        self.totals[self._stack[-1] if self._stack else "other"] += now - self._since
        self._since = now


def run_scale(cfg: ScaleConfig, progress: Progress | None = None) -> ScaleResult:
    """Run one job with `cfg.trainers` trainers for `cfg.rounds` rounds, end to end."""
    if cfg.trainers < 1 or cfg.rounds < 1:
        raise ValueError("--trainers and --rounds must be at least 1")
    tick = progress or (lambda stage, done, total: None)
    engine = make_engine(cfg.engine, cfg.ray_address, cfg.ray_cpus)
    try:
        return _run(cfg, engine, tick)
    finally:
        engine.close()


def _run(cfg: ScaleConfig, engine: Engine, tick: Progress) -> ScaleResult:
    demo_cfg = cfg.demo()
    watch = Stopwatch()
    store_dir = cfg.store_dir or Path(tempfile.mkdtemp(prefix="fedmarket-scale-"))
    chain, store = embedded_chain(), LocalStore(store_dir)
    watch.instrument(chain, "chain", CHAIN_CALLS)
    watch.instrument(store, "storage", STORE_CALLS)
    gas: dict[str, int] = {}
    tick("deploying contracts", 0, 1)
    demo = deploy(chain, store, gas, demo_cfg.reward_wei)
    job = post_job(demo_cfg, demo, gas)
    clients = register_trainers(demo_cfg, demo, job, tick)
    engine.load(job.spec.model, job.spec.training, job.shards)
    driver = RoundDriver(demo.market, demo.store, demo.aggregator, job.job_id, job.validation)
    before = watch.snapshot()
    round_s, splits, accuracy, commits, reveals, posts = [], [], [], [], [], []
    for r in range(1, cfg.rounds + 1):
        tick(f"round {r} of {cfg.rounds}", r - 1, cfg.rounds)
        start = time.perf_counter()
        c, v, post, acc = _play_round(demo, job, driver, clients, engine, watch, r)
        commits += c
        reveals += v
        posts.append(post)
        accuracy.append(acc)
        round_s.append(time.perf_counter() - start)
        after = watch.snapshot()
        splits.append({k: after[k] - before[k] for k in SPLIT})
        before = after
    tick("settling", cfg.rounds, cfg.rounds)
    settle_gas = _settle(demo, job, driver, clients)
    n = cfg.trainers
    return ScaleResult(
        trainers=n,
        rounds=cfg.rounds,
        round_s=[round(s, 3) for s in round_s],
        split_s={k: round(sum(s[k] for s in splits), 3) for k in SPLIT},
        split_rounds=[{k: round(v, 3) for k, v in s.items()} for s in splits],
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        gas={
            "commit": round(sum(commits) / len(commits)),
            "reveal": round(sum(reveals) / len(reveals)),
            "post": round(sum(posts) / len(posts) / n),
            "finalize": round(settle_gas["finalize"] / n),
            "claim": round(settle_gas["claim"] / n),
        },
        gas_total={"post": max(posts), "finalize": settle_gas["finalize"]},
        accuracy=accuracy,
        update_bytes=template_of(job.spec.model).size * 4,  # one fp32 update
        engine=cfg.engine,
    )


def _play_round(
    demo: DemoMarket,
    job: DemoJob,
    driver: RoundDriver,
    clients: list[TrainerClient],
    engine: Engine,
    watch: Stopwatch,
    round_: int,
) -> tuple[list[int], list[int], int, float]:
    """Train (the engine), commit, snapshot, reveal, then the aggregator's post and chunk.
    Returns (commit gas each, reveal gas each, post gas, test accuracy)."""
    job_id = job.job_id
    weights = clients[0].global_weights(job_id)  # one download: every trainer reads the same
    tasks = [TrainTask(i, c.seed * 1_000_003 + round_) for i, c in enumerate(clients)]
    with watch.section("training"):
        trained = engine.train(weights, tasks)
    commits = []
    for client, (local, _) in zip(clients, trained, strict=True):
        with watch.section("training"):  # the trainer's own work: Δ, encoding, sealing
            delta = pseudo_gradient(weights, local)
            commits.append(client.participate(job_id, round_, delta).commit_gas)
    del trained
    driver.collect_sealed()
    reveals = [client.reveal(job_id, round_) for client in clients]
    wait_until_final(demo, driver)
    with watch.section("aggregation"):
        report = driver.post(driver.compute())
        driver.reveal_chunk()
    _, acc = evaluate(job.spec.model, report.outcome.next_weights, job.test.x, job.test.y)
    return commits, reveals, report.gas_used, round(acc, 4)


def _settle(
    demo: DemoMarket, job: DemoJob, driver: RoundDriver, clients: list[TrainerClient]
) -> dict[str, int]:
    """Finalize (with every `settle` call a job this large needs), every trainer claims, the
    owner takes the refund. Gas in all of the finalize and settle transactions, and of claims."""
    wait_until_final(demo, driver)
    market, job_id = demo.market, job.job_id
    finalized = market.finalize(demo.owner, job_id).gas_used
    finalized += sum(r.gas_used for r in market.finish_settlement(demo.owner, job_id))
    claimed = sum(market.claim(c.account, job_id).gas_used for c in clients)
    refund_job(market, demo.owner, job_id)
    return {"finalize": finalized, "claim": claimed}
