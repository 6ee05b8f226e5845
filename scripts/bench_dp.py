"""Differential privacy for trainers: test accuracy at ε ∈ {1, 4, 8} against no DP, MNIST-5k.

10 trainers on IID shards of MNIST-5k's training split, 5 rounds, one local epoch per round.
Each DP trainer trains with DP-SGD (`backend.core.privacy.train_local_dp`: Opacus, Poisson
sampling, clip 1.0, the noise that spends the target ε over the whole job, δ = 1e-5) and puts
its claim in the update's metadata; every round goes through the aggregator's real round
computation (`aggregator.round.compute_round`: decode with the claim, copy detection, the
consensus rule, harm test, information scoring, outer Nesterov step), as in bench_attacks.py.
Also reported per setting: honest trainer-rounds flagged or held out (none should be
flagged: every trainer here is honest) and the largest ε claimed after the last round.

    OMP_NUM_THREADS=1 python scripts/bench_dp.py --json          # 1 seed, 5 rounds: 3.5 min
    OMP_NUM_THREADS=1 python scripts/bench_dp.py --seeds 3 --rounds 10 --json   # median of 3
    OMP_NUM_THREADS=1 python scripts/bench_dp.py --seeds 1 --rounds 3 --json   # quick

The last stdout line is one JSON object: {"settings": {"no_dp" | "eps_8" | ...: {"acc",
"accs", "flagged", "held_out", "max_epsilon", "noise_multiplier"}}, ...}; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from aggregator.round.compute import Submission, compute_round
from aggregator.round.replay import PublicRound, previous_updates, public_round
from backend.core.compression import encode_update
from backend.core.datasets import Dataset, load_dataset, shard, split_train_validation_test
from backend.core.errors import Reason
from backend.core.jobspec import AggregationSpec, JobSpec, PrivacySpec, TrainingSpec
from backend.core.models import ModelSpec, build_model, evaluate, get_weights, template_of
from backend.core.privacy import train_local_dp
from backend.core.training import pseudo_gradient, train_local


def bench_spec(data: Dataset, seed: int, privacy: PrivacySpec | None) -> JobSpec:
    """bench_attacks.py's job (MLP 784-64-10, outer Nesterov), with `privacy`."""
    return JobSpec(
        dataset="mnist5k",
        model=ModelSpec(family="mlp", input_dim=int(data.x.shape[1]), hidden=[64], seed=seed),
        training=TrainingSpec(local_epochs=1, lr=0.1, batch_size=16),
        aggregation=AggregationSpec(outer="nesterov", server_lr=0.7, momentum=0.9),  # type: ignore[arg-type]
        privacy=privacy,
    )


def simulate(
    spec: JobSpec, shards: list[Dataset], validation: Dataset, test: Dataset, rounds: int, seed: int
) -> dict:
    """One job through compute_round; (test accuracy, flags, holds, ε claimed)."""
    n = len(shards)
    addresses = [f"0x{i + 1:040x}" for i in range(n)]
    template = template_of(spec.model)
    weights = get_weights(build_model(spec.model))
    history: list[PublicRound] = []
    momentum = None
    flagged = held = 0
    epsilons: list[float] = []
    sigma = None
    for r in range(1, rounds + 1):
        subs = []
        for i, data in enumerate(shards):
            train_seed = seed * 7919 + r * 101 + i
            meta = None
            if spec.privacy is None:
                w_local, _ = train_local(spec.model, weights, data, spec.training, seed=train_seed)
            else:
                w_local, _, claim = train_local_dp(
                    spec.model,
                    weights,
                    data,
                    spec.training,
                    spec.privacy,
                    rounds=rounds,
                    round_=r,
                    seed=train_seed,
                )
                meta, sigma = claim.to_metadata(), claim.noise_multiplier
            blob, _ = encode_update(
                pseudo_gradient(weights, w_local), template, "fp32", metadata=meta
            )
            subs.append(Submission(addresses[i], blob, commit_order=i))
        out = compute_round(spec, weights, subs, validation, previous_updates(history), momentum)
        weights, momentum = out.next_weights, out.momentum
        history.append(public_round(out))
        flagged += sum(o.reason != Reason.ACCEPTED for o in out.outcomes)
        held += sum(
            o.reason == Reason.ACCEPTED and o.score == 0 and o.detail != "" for o in out.outcomes
        )
        epsilons = [o.epsilon for o in out.outcomes if o.epsilon is not None]
    _, acc = evaluate(spec.model, weights, test.x, test.y)
    return {
        "acc": acc,
        "flagged": flagged,
        "held_out": held,
        "max_epsilon": max(epsilons) if epsilons else None,
        "noise_multiplier": sigma,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epsilons", default="8,4,1")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = load_dataset("mnist")
    settings: dict[str, PrivacySpec | None] = {"no_dp": None}
    for eps in args.epsilons.split(","):
        settings[f"eps_{eps}"] = PrivacySpec(target_epsilon=float(eps), clip_norm=1.0, delta=1e-5)
    runs: dict[str, list[dict]] = {k: [] for k in settings}
    started = time.perf_counter()
    for seed in range(args.seeds):
        train, validation, test = split_train_validation_test(data, seed=seed)
        shards = shard(train, args.trainers, seed=seed)
        for name, privacy in settings.items():
            t = time.perf_counter()
            spec = bench_spec(data, seed, privacy)
            runs[name].append(simulate(spec, shards, validation, test, args.rounds, seed))
            print(
                f"seed {seed} {name}: acc {runs[name][-1]['acc']:.4f} "
                f"({time.perf_counter() - t:.0f}s)",
                file=sys.stderr,
            )
    result = {"settings": {}, "trainers": args.trainers, "rounds": args.rounds}
    for name, rs in runs.items():
        accs = [round(r["acc"], 4) for r in rs]
        eps = [r["max_epsilon"] for r in rs if r["max_epsilon"] is not None]
        result["settings"][name] = {
            "acc": round(float(np.median(accs)), 4),
            "accs": accs,
            "flagged": sum(r["flagged"] for r in rs),
            "held_out": sum(r["held_out"] for r in rs),
            "max_epsilon": round(max(eps), 3) if eps else None,
            "noise_multiplier": rs[0]["noise_multiplier"],
        }
    result["trainer_rounds"] = args.trainers * args.rounds * args.seeds
    result["seconds"] = round(time.perf_counter() - started, 1)
    for name, s in result["settings"].items():
        print(
            f"{name:>6}: test acc {s['acc']:.4f} (median of {args.seeds}), flagged "
            f"{s['flagged']}, held out {s['held_out']}, max ε {s['max_epsilon']}"
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
