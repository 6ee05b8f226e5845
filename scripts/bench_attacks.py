"""The market under attack: accuracy, detection and reward share per attack.

20 trainers on non-IID shards (Dirichlet α over classes); for each attack 30% of them are
malicious. Every round goes through the aggregator's real round computation
(`aggregator.round.compute_round`: decode, copy detection, robust rule, scoring, outer step),
and rewards follow the contract's settlement formula (reward ∝ accumulated fixed-point score),
so the attackers' reward share is what the chain would pay them. The chain itself is left out
here: it adds no decisions, only cost (see bench_overhead.py).

Also reported: honest-only, and centralized training on the union of the shards (same model,
same number of epochs over the data, same optimizer).

    python scripts/bench_attacks.py --json            # MNIST (5,000 real images), 10 rounds
    python scripts/bench_attacks.py --quick --json    # digits, 5 rounds
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from aggregator.round.compute import Submission, compute_round
from backend.core import codec
from backend.core.datasets import Dataset, load_dataset, shard, split_train_validation_test
from backend.core.jobspec import AggregationSpec, JobSpec, TrainingSpec
from backend.core.models import ModelSpec, build_model, evaluate, get_weights
from backend.core.training import pseudo_gradient, train_local
from trainer_client.adversaries import poison_data, poison_update

# The simulated trainers' attacks (trainer_client.adversaries.ATTACKS) plus `copy`: resubmitting
# an honest peer's update, which only a simulation that sees every update can play.
ATTACKS = ("sign_flip", "noise", "label_flip", "copy", "zero")


def simulate(
    spec: JobSpec,
    shards: list[Dataset],
    validation: Dataset,
    test: Dataset,
    rounds: int,
    malicious: set[int],
    attack: str | None,
    seed: int,
) -> dict:
    n = len(shards)
    addresses = [f"0x{i + 1:040x}" for i in range(n)]
    weights = get_weights(build_model(spec.model))
    totals = np.zeros(n, dtype=np.int64)
    flagged = np.zeros(n, dtype=np.int64)
    history: list[np.ndarray] = []
    momentum = None
    rng = np.random.default_rng(seed)
    for r in range(1, rounds + 1):
        deltas = []
        for i, data in enumerate(shards):
            if attack is not None and i in malicious:
                data = poison_data(attack, data, spec.model.num_classes)
            w_local, _ = train_local(
                spec.model, weights, data, spec.training, seed=seed * 7919 + r * 101 + i
            )
            deltas.append(pseudo_gradient(weights, w_local))
        honest = [i for i in range(n) if i not in malicious]
        for i in sorted(malicious):
            if attack == "copy":  # needs the others' updates: a simulation-only attack
                deltas[i] = {k: v.copy() for k, v in deltas[int(rng.choice(honest))].items()}
            elif attack is not None:
                deltas[i] = poison_update(attack, deltas[i], rng)
        # A copier needs the original before it commits, so it commits later; others in order.
        order = {i: (n + i if i in malicious else i) for i in range(n)}
        subs = [
            Submission(addresses[i], codec.encode(deltas[i]), commit_order=order[i])
            for i in range(n)
        ]
        previous = np.concatenate(history[-3:]) if history else None
        out = compute_round(spec, weights, subs, validation, previous, momentum)
        weights, momentum = out.next_weights, out.momentum
        history.append(out.accepted_updates)
        for i, o in enumerate(out.outcomes):
            totals[i] += o.score_fp
            flagged[i] += int(o.reason != 0)
    _, acc = evaluate(spec.model, weights, test.x, test.y)
    mal = sorted(malicious)
    hon = [i for i in range(n) if i not in malicious]
    total = int(totals.sum())
    return {
        "acc": round(acc, 4),
        "recall": round(float(flagged[mal].sum()) / (len(mal) * rounds), 4) if mal else None,
        "false_flag_rate": round(float(flagged[hon].sum()) / (len(hon) * rounds), 4),
        "attacker_reward_share": round(float(totals[mal].sum()) / total, 4)
        if total and mal
        else 0.0,
    }


def centralized(
    spec: JobSpec, shards: list[Dataset], test: Dataset, epochs: int, seed: int
) -> float:
    union = Dataset(np.concatenate([s.x for s in shards]), np.concatenate([s.y for s in shards]))
    training = spec.training.model_copy(update={"local_epochs": epochs})
    w, _ = train_local(spec.model, get_weights(build_model(spec.model)), union, training, seed=seed)
    return round(evaluate(spec.model, w, test.x, test.y)[1], 4)


def bench_spec(args: argparse.Namespace, name: str, data: Dataset) -> JobSpec:
    """The benchmark's job: an MLP, one local epoch, the rule and thresholds from the flags."""
    rule: dict = {"name": args.rule}
    if args.harm_ratio is not None:
        rule["harm_ratio"] = args.harm_ratio
    if args.max_norm_ratio is not None:
        rule["max_norm_ratio"] = args.max_norm_ratio
    return JobSpec(
        dataset=name,
        model=ModelSpec(family="mlp", input_dim=int(data.x.shape[1]), hidden=[64], seed=args.seed),
        training=TrainingSpec(local_epochs=1, lr=0.1, batch_size=16),
        # DiLoCo-style outer Nesterov: many small non-IID shards need the outer momentum.
        aggregation=AggregationSpec(
            rule=rule,
            outer="nesterov",  # type: ignore[arg-type]
            server_lr=0.7,
            momentum=0.9,
        ),
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="digits, 5 rounds")
    ap.add_argument("--trainers", type=int, default=20)
    ap.add_argument("--fraction", type=float, default=0.3, help="share of malicious trainers")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument(
        "--alpha", type=float, default=1.0, help="Dirichlet alpha of the non-IID shards"
    )
    ap.add_argument("--rule", default="consensus")
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--harm-ratio", type=float, default=None, help="override the rule's harm test")
    ap.add_argument("--max-norm-ratio", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    name = "digits" if args.quick else "mnist"
    rounds = args.rounds or (15 if args.quick else 20)
    data = load_dataset(name)
    train, validation, test = split_train_validation_test(data, seed=args.seed)
    shards = shard(train, args.trainers, seed=args.seed, non_iid_alpha=args.alpha)
    spec = bench_spec(args, name, data)
    k = round(args.fraction * args.trainers)
    rng = np.random.default_rng(args.seed)
    malicious = {int(i) for i in rng.choice(args.trainers, size=k, replace=False)}
    t0 = time.perf_counter()
    result: dict = {"dataset": name, "trainers": args.trainers, "malicious": k, "rounds": rounds}
    result["centralized_acc"] = centralized(
        spec, shards, test, rounds * spec.training.local_epochs, args.seed
    )
    result["honest_acc"] = simulate(spec, shards, validation, test, rounds, set(), None, args.seed)[
        "acc"
    ]
    result["attacks"] = {}
    for attack in [a for a in args.attacks.split(",") if a]:
        result["attacks"][attack] = simulate(
            spec, shards, validation, test, rounds, malicious, attack, args.seed
        )
        print(f"{attack}: {result['attacks'][attack]}", file=sys.stderr)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
