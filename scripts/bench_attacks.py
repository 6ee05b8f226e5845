"""The market under attack: accuracy, detection and reward share per attack.

20 trainers on non-IID shards (Dirichlet α over classes); for each attack 30% of them are
malicious. Every round goes through the aggregator's real round computation
(`aggregator.round.compute_round`: decode, copy detection, robust rule, scoring, outer step),
and rewards follow the contract's settlement formula (reward ∝ accumulated fixed-point score),
so the attackers' reward share is what the chain would pay them. The chain itself is left out
here: it adds no decisions, only cost (see bench_overhead.py).

Also reported: honest-only, and centralized training on the union of the shards (same model,
same number of epochs over the data, same optimizer).

    python scripts/bench_attacks.py --json            # MNIST (5,000 real images), 20 rounds
    python scripts/bench_attacks.py --quick --json    # digits, 15 rounds

Adaptive collusion (`--adaptive`, issue 14): 6 of 20 trainers collude and know everything
public when they craft a round (earlier rounds' reveals and global models, the protocol and its
code) plus their own shards, but not the current round's honest updates (commit–reveal); the
`omniscient` stress attacks know those too. The attack math is `trainer_client.collusion`.
MNIST-5k and digits, 10 rounds, seeds 0, 1, 2; each figure is the mean over the seeds:

    OMP_NUM_THREADS=1 python scripts/bench_attacks.py --adaptive --json   # 3.5 min, 2 cores
    OMP_NUM_THREADS=1 python scripts/bench_attacks.py --adaptive --quick --json  # digits, 3 rounds
    python scripts/bench_attacks.py --adaptive --datasets digits --attacks alie,min_max

OMP_NUM_THREADS=1: on a 2-core machine torch's and OpenBLAS's thread pools fight; one thread
each runs this benchmark about 10x faster, with the same results.

The last stdout line is one JSON object: {"datasets": {NAME: {"honest_acc", ..., "attacks":
{ATTACK: {"kind", "acc", "recall", "false_flag_rate", "attacker_reward_share", ...}}}}}; the
target check (PASS/MISS per attack) is printed on stdout just before it, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from aggregator.round.compute import PublicUpdates, RoundOutcome, Submission, compute_round
from aggregator.round.replay import PublicRound, previous_updates, public_round
from backend.core import codec
from backend.core.codec import Template, Tensors
from backend.core.datasets import Dataset, load_dataset, shard, split_train_validation_test
from backend.core.errors import Reason
from backend.core.jobspec import AggregationSpec, JobSpec, TrainingSpec
from backend.core.models import ModelSpec, build_model, evaluate, get_weights, template_of
from backend.core.training import pseudo_gradient, train_local
from trainer_client.adversaries import poison_data, poison_update
from trainer_client.collusion import CRAFTED, Knowledge, craft

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
    history: list[PublicRound] = []
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
        out = compute_round(spec, weights, subs, validation, previous_updates(history), momentum)
        weights, momentum = out.next_weights, out.momentum
        history.append(public_round(out))
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


def bench_spec(
    args: argparse.Namespace, name: str, data: Dataset, seed: int | None = None
) -> JobSpec:
    """The benchmark's job: an MLP, one local epoch, the rule and thresholds from the flags."""
    rule: dict = {"name": args.rule}
    if args.harm_ratio is not None:
        rule["harm_ratio"] = args.harm_ratio
    if args.max_norm_ratio is not None:
        rule["max_norm_ratio"] = args.max_norm_ratio
    return JobSpec(
        dataset=name,
        model=ModelSpec(
            family="mlp",
            input_dim=int(data.x.shape[1]),
            hidden=[64],
            seed=args.seed if seed is None else seed,
        ),
        training=TrainingSpec(local_epochs=1, lr=0.1, batch_size=16),
        # DiLoCo-style outer Nesterov: many small non-IID shards need the outer momentum.
        aggregation=AggregationSpec(
            rule=rule,
            outer="nesterov",  # type: ignore[arg-type]
            server_lr=0.7,
            momentum=0.9,
        ),
    )


# ---------------------------------------------------------------------------------------------
# Adaptive collusion (issue 14)

#: Each adaptive attack and its kind (its targets: a free rider's share ≤ 1%, a poisoner's ≤ 2%).
ADAPTIVE: dict[str, str] = {
    "noisy_copy": "free_rider",
    "replay_aggregate": "free_rider",
    "zero": "free_rider",
    "alie": "poisoner",
    "ipm": "poisoner",
    "min_max": "poisoner",
    "min_sum": "poisoner",
    "label_flip": "poisoner",
    "sign_flip": "poisoner",
    "noise": "poisoner",
    "withhold": "poisoner",
    "alie_omniscient": "omniscient",
    "min_max_omniscient": "omniscient",
    "noisy_copy_current": "omniscient",
}
#: Colluders that do not train at all: they only copy or replay what is public (or leaked).
#: `absent` is the reference run in which the colluders never reveal anything.
NO_TRAINING = ("noisy_copy", "replay_aggregate", "noisy_copy_current", "absent")
QUICK_ATTACKS = ("noisy_copy", "alie", "min_max", "withhold")
DATASETS = {"mnist5k": "mnist", "digits": "digits"}


@dataclass
class Record:
    """One run's per-round results: (rounds, n) reason codes, fixed-point scores, withheld."""

    reasons: list[list[int]] = field(default_factory=list)
    scores: list[list[int]] = field(default_factory=list)
    withheld: list[list[bool]] = field(default_factory=list)
    acc: float = 0.0


@dataclass
class Public:
    """What everyone (the colluders included) knows of the previous round."""

    reveals: dict[int, np.ndarray] = field(default_factory=dict)  # trainer → its flat reveal
    step: np.ndarray | None = None  # w_{r−1} − w_r, flat


def _train_round(
    spec: JobSpec,
    weights: Tensors,
    shards: list[Dataset],
    colluders: set[int],
    attack: str | None,
    r: int,
    seed: int,
) -> dict[int, Tensors]:
    """Every trainer's honest Δ this round (label_flip colluders train on flipped labels);
    colluders that only copy do not train."""
    deltas: dict[int, Tensors] = {}
    for i, data in enumerate(shards):
        if i in colluders and attack in NO_TRAINING:
            continue
        if i in colluders and attack is not None:
            data = poison_data(attack, data, spec.model.num_classes)
        w_local, _ = train_local(
            spec.model, weights, data, spec.training, seed=seed * 7919 + r * 101 + i
        )
        deltas[i] = pseudo_gradient(weights, w_local)
    return deltas


def _collude(
    attack: str,
    deltas: dict[int, Tensors],
    colluders: list[int],
    public: Public,
    template: Template,
    rng: np.random.Generator,
    args: argparse.Namespace,
) -> dict[int, Tensors]:
    """The colluders' submissions: crafted from what they know, or the reused naive attacks
    (`sign_flip`, `noise`, `label_flip`, and `withhold`'s sign flip) applied to their own Δ."""
    if attack not in CRAFTED:
        base = "sign_flip" if attack == "withhold" else attack
        return {i: poison_update(base, deltas[i], rng) for i in colluders}

    def flat(rows: list[int]) -> np.ndarray | None:
        return np.stack([template.flatten(deltas[i]) for i in rows]) if rows else None

    others = [i for i in sorted(public.reveals) if i not in colluders]
    honest = [i for i in range(args.trainers) if i not in colluders]
    knowledge = Knowledge(
        n=args.trainers,
        own=flat([i for i in colluders if i in deltas]),
        previous_others=np.stack([public.reveals[i] for i in others]) if others else None,
        previous_step=public.step,
        current_honest=flat(honest) if ADAPTIVE[attack] == "omniscient" else None,
    )
    vectors = craft(
        attack, knowledge, len(colluders), rng, jitter=args.jitter, eps=args.eps, d=template.size
    )
    return {i: template.unflatten(v) for i, v in zip(colluders, vectors, strict=True)}


def _submissions(
    n: int, updates: dict[int, Tensors], colluders: list[int], withheld: set[int]
) -> list[Submission]:
    """The round's submissions; colluders commit after everyone else (a copier must)."""
    out = []
    for i in range(n):
        address, order = f"0x{i + 1:040x}", n + i if i in colluders else i
        if i in withheld:
            out.append(Submission(address, None, Reason.MISSING, "no reveal this round", order))
        else:
            out.append(Submission(address, codec.encode(updates[i]), commit_order=order))
    return out


def _play_round(
    spec: JobSpec,
    weights: Tensors,
    updates: dict[int, Tensors],
    colluders: list[int],
    attack: str | None,
    validation: Dataset,
    previous: PublicUpdates | None,
    momentum: np.ndarray | None,
) -> tuple[RoundOutcome, set[int]]:
    """The round as the aggregator computes it. Withholding colluders first compute it
    themselves from the public reveals and drop the reveals that would be flagged, until none
    would be (the result is public and deterministic, so they can). Absent ones reveal nothing.
    """
    n = len(set(updates) | set(colluders))  # every trainer: honest ones always reveal
    withheld: set[int] = set(colluders) if attack == "absent" else set()
    while True:
        subs = _submissions(n, updates, colluders, withheld)
        out = compute_round(spec, weights, subs, validation, previous, momentum)
        caught = {
            i for i in colluders if i not in withheld and out.outcomes[i].reason != Reason.ACCEPTED
        }
        if attack != "withhold" or not caught:
            return out, withheld
        withheld |= caught


def simulate_adaptive(
    spec: JobSpec,
    data: tuple[list[Dataset], Dataset, Dataset],
    rounds: int,
    colluders: list[int],
    attack: str | None,
    seed: int,
    args: argparse.Namespace,
) -> Record:
    """One job under one adaptive attack (None: honest only), through `compute_round`."""
    shards, validation, test = data
    template = template_of(spec.model)
    weights = get_weights(build_model(spec.model))
    rng = np.random.default_rng([seed, zlib.crc32((attack or "").encode())])
    history: list[PublicRound] = []
    momentum, public, record = None, Public(), Record()
    for r in range(1, rounds + 1):
        deltas = _train_round(spec, weights, shards, set(colluders), attack, r, seed)
        updates = dict(deltas)
        if attack not in (None, "absent"):
            updates |= _collude(attack, deltas, colluders, public, template, rng, args)
        out, withheld = _play_round(
            spec,
            weights,
            updates,
            colluders,
            attack,
            validation,
            previous_updates(history),
            momentum,
        )
        public = Public(
            {i: template.flatten(u) for i, u in updates.items() if i not in withheld},
            template.flatten(weights) - template.flatten(out.next_weights),
        )
        weights, momentum = out.next_weights, out.momentum
        history.append(public_round(out))
        record.reasons.append(out.reasons)
        record.scores.append(out.scores_fp)
        record.withheld.append([i in withheld for i in range(len(shards))])
    record.acc = float(evaluate(spec.model, weights, test.x, test.y)[1])
    return record


def run_metrics(record: Record, colluders: list[int]) -> dict[str, float]:
    """One run's figures: detection over colluder-rounds, false flags over honest ones, and the
    colluders' share of the accumulated fixed-point score (what the contract pays ∝)."""
    reasons, scores = np.array(record.reasons), np.array(record.scores, dtype=np.int64)
    n = reasons.shape[1]
    mal = sorted(colluders)
    hon = [i for i in range(n) if i not in colluders]
    slashable = np.isin(reasons, sorted(Reason.slashable_codes()))
    total = int(scores.sum())
    out = {
        "acc": record.acc,
        "false_flag_rate": float((reasons[:, hon] != 0).mean()),
        "honest_slashed": int(slashable[:, hon].sum()),
    }
    if mal:
        out |= {
            "recall": float((reasons[:, mal] != 0).mean()),
            "slashed_rate": float(slashable[:, mal].mean()),
            "recall_after_round1": float((reasons[1:, mal] != 0).mean())
            if len(reasons) > 1
            else 0.0,
            "zero_score_rate": float((scores[:, mal] == 0).mean()),
            "withheld_rate": float(np.array(record.withheld)[:, mal].mean()),
            "attacker_reward_share": float(scores[:, mal].sum()) / total if total else 0.0,
        }
    return out


def mean_over_seeds(runs: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each figure over the seeds (counts are summed), rounded for the report."""
    out: dict[str, float] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        out[key] = int(sum(values)) if key == "honest_slashed" else round(float(np.mean(values)), 4)
    return out


def _seed_setup(
    args: argparse.Namespace, name: str, data: Dataset, seed: int
) -> tuple[JobSpec, tuple[list[Dataset], Dataset, Dataset], list[int]]:
    train, validation, test = split_train_validation_test(data, seed=seed)
    shards = shard(train, args.trainers, seed=seed, non_iid_alpha=args.alpha)
    rng = np.random.default_rng(seed)
    colluders = sorted(
        int(i) for i in rng.choice(args.trainers, size=args.colluders, replace=False)
    )
    return bench_spec(args, name, data, seed), (shards, validation, test), colluders


def run_dataset(args: argparse.Namespace, key: str, attacks: list[str]) -> dict:
    """Honest-only, the colluders-absent reference and every attack on one dataset, over the
    seeds. `honest_acc_without_colluders`: the 14 honest trainers alone (the colluders never
    reveal), the accuracy an attack whose colluders all end up excluded converges to."""
    data = load_dataset(DATASETS[key])
    runs: dict[str | None, list[dict[str, float]]] = {a: [] for a in [None, "absent", *attacks]}
    for seed in args.seed_list:
        spec, split, colluders = _seed_setup(args, DATASETS[key], data, seed)
        for attack in runs:
            t0 = time.perf_counter()
            mal = colluders if attack is not None else []
            record = simulate_adaptive(spec, split, args.rounds, mal, attack, seed, args)
            runs[attack].append(run_metrics(record, mal))
            shown = {k: round(v, 3) for k, v in runs[attack][-1].items()}
            took = time.perf_counter() - t0
            print(
                f"[{key} seed {seed}] {attack or 'honest'}: {shown} ({took:.0f} s)", file=sys.stderr
            )
    h = mean_over_seeds(runs[None])
    out: dict = {
        "honest_acc": h["acc"],
        "honest_false_flag_rate": h["false_flag_rate"],
        "honest_slashed": h["honest_slashed"],
        "honest_acc_without_colluders": mean_over_seeds(runs["absent"])["acc"],
        "attacks": {},
    }
    for name in attacks:
        a = {"kind": ADAPTIVE[name], **mean_over_seeds(runs[name])}
        out["attacks"][name] = a | {"checks": checks_of(name, a, h["acc"])}
    return out


def targets_of(name: str, kind: str) -> tuple[float, float]:
    """(largest reward share, largest accuracy drop in points) the issue allows an attack."""
    free = kind == "free_rider" or name == "noisy_copy_current"
    return (0.01 if free else 0.02), (3.0 if kind == "omniscient" else 2.0)


def checks_of(name: str, a: dict, honest_acc: float) -> dict[str, bool]:
    """Whether one attack's means meet the targets: share, accuracy, honest false flags."""
    share_cap, acc_cap = targets_of(name, a["kind"])
    return {
        "share": a["attacker_reward_share"] <= share_cap,
        "acc": 100 * (honest_acc - a["acc"]) <= acc_cap + 1e-9,
        "false_flags": a["false_flag_rate"] <= 0.02,
    }


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def target_table(result: dict) -> list[str]:
    """The issue's targets, PASS/MISS per dataset and attack, as table lines."""
    lines = [
        f"{'dataset':<8} {'attack':<19} {'kind':<10} {'acc':>6} {'Δpts':>5} {'recall':>6} "
        f"{'f.flag':>6} {'share':>6}  share-target    acc-target  false-flags"
    ]
    for key, d in result["datasets"].items():
        ok = d["honest_false_flag_rate"] <= 0.02 and d["honest_slashed"] == 0
        lines.append(
            f"{key:<8} {'honest-only':<19} {'':<10} {d['honest_acc']:>6.4f} {'':>5} {'':>6} "
            f"{d['honest_false_flag_rate']:>6.4f} {'':>6}  honest flagged ≤2% and "
            f"{d['honest_slashed']} slashed (0 allowed): {_mark(ok)}"
        )
        lines.append(
            f"{key:<8} {'(colluders absent)':<19} {'reference':<10} "
            f"{d['honest_acc_without_colluders']:>6.4f} "
            f"{100 * (d['honest_acc'] - d['honest_acc_without_colluders']):>+5.1f}"
        )
        for name, a in d["attacks"].items():
            share_cap, acc_cap = targets_of(name, a["kind"])
            c = a["checks"]
            lines.append(
                f"{key:<8} {name:<19} {a['kind']:<10} {a['acc']:>6.4f} "
                f"{100 * (d['honest_acc'] - a['acc']):>+5.1f} {a['recall']:>6.3f} "
                f"{a['false_flag_rate']:>6.4f} {a['attacker_reward_share']:>6.4f}  "
                f"≤{share_cap:.0%} {_mark(c['share'])}    ≤{acc_cap:.0f} pts {_mark(c['acc'])}  "
                f"≤2% {_mark(c['false_flags'])}"
            )
    return lines


def main_adaptive(args: argparse.Namespace) -> None:
    """`--adaptive`: the collusion benchmark; the target table, then one JSON line."""
    if args.quick:
        args.datasets, args.seeds, args.rounds = "digits", "0", args.rounds or 3
        args.attacks = args.attacks or ",".join(QUICK_ATTACKS)
    args.rounds = args.rounds or 10
    args.seed_list = [int(s) for s in args.seeds.split(",") if s]
    attacks = [a for a in (args.attacks or ",".join(ADAPTIVE)).split(",") if a]
    unknown = [a for a in attacks if a not in ADAPTIVE]
    if unknown:
        raise SystemExit(f"unknown adaptive attack(s) {unknown}; known: {', '.join(ADAPTIVE)}")
    keys = [k for k in args.datasets.split(",") if k]
    if any(k not in DATASETS for k in keys):
        raise SystemExit(f"unknown dataset in {keys}; known: {', '.join(DATASETS)}")
    result: dict = {"datasets": {}}
    for key in keys:
        t0 = time.perf_counter()
        result["datasets"][key] = run_dataset(args, key, attacks)
        result["datasets"][key]["setup"] = {
            "trainers": args.trainers,
            "colluders": args.colluders,
            "rounds": args.rounds,
            "seeds": args.seed_list,
            "alpha": args.alpha,
            "jitter": args.jitter,
            "ipm_eps": args.eps,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    print("\n".join(target_table(result)))
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="digits, 15 rounds; with --adaptive: digits, 1 seed, 3 rounds, 4 attacks",
    )
    ap.add_argument("--trainers", type=int, default=20)
    ap.add_argument("--fraction", type=float, default=0.3, help="share of malicious trainers")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument(
        "--alpha", type=float, default=1.0, help="Dirichlet alpha of the non-IID shards"
    )
    ap.add_argument("--rule", default="consensus")
    ap.add_argument("--attacks", default=None, help="comma-separated (default: all of the mode)")
    ap.add_argument("--adaptive", action="store_true", help="the adaptive collusion benchmark")
    ap.add_argument("--datasets", default="mnist5k,digits", help="--adaptive: mnist5k, digits")
    ap.add_argument("--seeds", default="0,1,2", help="--adaptive: seeds to average over")
    ap.add_argument("--colluders", type=int, default=6, help="--adaptive: colluding trainers")
    ap.add_argument(
        "--jitter", type=float, default=0.05, help="--adaptive: each colluder's relative noise"
    )
    ap.add_argument("--eps", type=float, default=0.5, help="--adaptive: IPM's epsilon")
    ap.add_argument("--harm-ratio", type=float, default=None, help="override the rule's harm test")
    ap.add_argument("--max-norm-ratio", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.adaptive:
        main_adaptive(args)
        return

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
    for attack in [a for a in (args.attacks or ",".join(ATTACKS)).split(",") if a]:
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
