"""What the market costs on top of plain federated averaging, on one fixed workload.

Workload: scikit-learn digits, 20 trainers (IID shards), 5 rounds, MLP 64-64-10, one local
epoch, no attackers. `plain` is in-memory FedAvg (train, average, repeat). `market` is the whole
market: deploy, job, registrations, and per round upload + commit + reveal per trainer, then
fetch, checks, scoring, aggregation, storage and one batched post, then finalize and claims.
Both run in this process, one after the other; the local training is identical.

Two views of the same run:
- `ratio` = market_s / plain_s, the whole job against plain FedAvg run first (cold: `plain_s`
  includes torch's one-time start, `warmup_s`, which the market run after it does not pay).
- `overhead_per_update_ms`: what one more update costs in steady state, the rounds phase of
  the market minus plain FedAvg run warm, per update. One-time costs (deploy, registrations,
  settlement, torch's start) are reported apart, so the figure compares across --rounds: it
  is flat when nothing grows with the job's history.

    python scripts/bench_overhead.py --json           # embedded default (in-process EVM)
    python scripts/bench_overhead.py --real --json    # on anvil (started here)

Last line: {"trainers": 20, "rounds": 5, "backend": str, "plain_s": float, "market_s": float,
            "ratio": float, "overhead_per_update_ms": float, "plain_warm_s": float,
            "warmup_s": float, "phase_s": {"setup", "rounds", "settle", "report"},
            "whole_run_overhead_per_update_ms": float, "plain_acc": float, "market_acc": float}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from backend.chain.rpc import rpc_chain
from backend.core.datasets import load_dataset, shard, split_train_validation_test
from backend.core.jobspec import TrainingSpec
from backend.core.models import ModelSpec, build_model, evaluate, get_weights
from backend.core.training import pseudo_gradient, train_local
from backend.simulation.demo import DemoConfig, run_demo


def plain_fedavg(trainers: int, rounds: int, seed: int) -> tuple[float, float]:
    data = load_dataset("digits")
    train, _, test = split_train_validation_test(data, seed=seed)
    shards = shard(train, trainers, seed=seed)
    spec = ModelSpec(family="mlp", input_dim=64, hidden=[64], seed=seed)
    training = TrainingSpec(local_epochs=1, lr=0.1)
    t0 = time.perf_counter()
    weights = get_weights(build_model(spec))
    for r in range(1, rounds + 1):
        deltas = []
        for i, part in enumerate(shards):
            local, _ = train_local(spec, weights, part, training, seed=(seed + i) * 1_000_003 + r)
            deltas.append(pseudo_gradient(weights, local))
        weights = {
            k: (weights[k] - np.mean([d[k] for d in deltas], axis=0)).astype(np.float32)
            for k in weights
        }
    elapsed = time.perf_counter() - t0
    return elapsed, evaluate(spec, weights, test.x, test.y)[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trainers", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--real", action="store_true", help="anvil (+ IPFS daemon if configured)")
    ap.add_argument("--profile", type=Path, default=None, help="write a pyinstrument HTML profile")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    plain_s, plain_acc = plain_fedavg(args.trainers, args.rounds, seed=0)
    plain_warm_s, _ = plain_fedavg(args.trainers, args.rounds, seed=0)
    cfg = DemoConfig(
        trainers=args.trainers,
        rounds=args.rounds,
        local_epochs=1,
        hidden=[64],
        store_dir=Path(tempfile.mkdtemp(prefix="fedmarket-bench-")),
    )
    node = None
    chain = None
    if args.real:
        from backend.devtools.devnode import AnvilNode

        node = AnvilNode().start()
        chain = rpc_chain(node.url, dev_accounts=True)
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    try:
        t0 = time.perf_counter()
        if args.real and os.environ.get("FEDMARKET_IPFS_API"):
            print(
                "note: the demo path uses the local store; IPFS is measured by the integration "
                "suite",
                file=sys.stderr,
            )
        result = run_demo(cfg, chain=chain)
        market_s = time.perf_counter() - t0
    finally:
        if profiler is not None:
            profiler.stop()
            args.profile.write_text(profiler.output_html())
        if node is not None:
            node.stop()
    updates = args.trainers * args.rounds
    rounds_s = result.phase_s["rounds"]
    out = {
        "trainers": args.trainers,
        "rounds": args.rounds,
        "backend": "anvil" if args.real else "embedded",
        "plain_s": round(plain_s, 3),
        "market_s": round(market_s, 3),
        "ratio": round(market_s / plain_s, 2),
        "overhead_per_update_ms": round((rounds_s - plain_warm_s) / updates * 1000, 2),
        "plain_warm_s": round(plain_warm_s, 3),
        "warmup_s": round(plain_s - plain_warm_s, 3),
        "phase_s": {k: round(v, 3) for k, v in result.phase_s.items()},
        "whole_run_overhead_per_update_ms": round((market_s - plain_s) / updates * 1000, 1),
        "plain_acc": round(plain_acc, 4),
        "market_acc": result.summary["accuracy"][-1],
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
