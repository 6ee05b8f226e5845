"""Bytes per update and accuracy cost of each pseudo-gradient codec (fp32, int8, top-k).

Same data split, shards, seeds and rounds for every codec: digits, MLP 64-64-10, 10 trainers,
20 rounds of 5 local epochs at lr 0.5 (the recipe at which fp32 FedAvg reaches its plateau, about
96%: a codec's cost is measured on a job that trains well, not on an under-trained one), repeated
for 3 seeds. Each run goes through the trainer's encode path (encode_update with error feedback)
and the aggregator's compute_round (decode_update). No chain needed. The last line is JSON:
{"fp32_bytes", "int8_bytes", "topk_bytes", "fp32_acc", "int8_acc", "topk_acc"}
(bytes = mean size of the whole stored blob; acc = test accuracy after the last round, in
percent, mean over the seeds). `--rounds 10 --epochs 2 --lr 0.1 --seeds 1` is the early,
under-trained regime, where top-k's delay costs more (see the README).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator.round.compute import Submission, compute_round
from backend.core import codec as st_codec
from backend.core.compression import DEFAULT_TOPK_FRACTION, encode_update
from backend.core.datasets import load_dataset, shard, split_train_validation_test
from backend.core.jobspec import JobSpec, TrainingSpec
from backend.core.models import ModelSpec, build_model, evaluate, get_weights, template_of
from backend.core.training import pseudo_gradient, train_local


def run_codec(
    codec: str, trainers: int, rounds: int, fraction: float, seed: int, epochs: int, lr: float
) -> dict:
    data = load_dataset("digits")
    train, validation, test = split_train_validation_test(data, seed=seed)
    shards = shard(train, trainers, seed=seed)
    spec = JobSpec(
        model=ModelSpec(family="mlp", input_dim=64, num_classes=10, hidden=[64, 64], seed=seed),
        training=TrainingSpec(local_epochs=epochs, lr=lr),
        codec=codec,  # type: ignore[arg-type]
        topk_fraction=fraction,
    )
    weights = get_weights(build_model(spec.model))
    template = template_of(spec.model)
    residuals: list[dict | None] = [None] * trainers
    history: list[np.ndarray] = []
    momentum = None
    sizes: list[int] = []
    accs: list[float] = []
    for r in range(1, rounds + 1):
        subs = []
        # Trainers see the global model as a downloaded blob (its tensors in the blob's order).
        downloaded = st_codec.decode(st_codec.encode(weights), template)
        for i in range(trainers):
            local, _ = train_local(
                spec.model, downloaded, shards[i], spec.training, seed=(seed + i) * 1_000_003 + r
            )
            delta = pseudo_gradient(downloaded, local)
            blob, residuals[i] = encode_update(
                delta, template, codec, topk_fraction=fraction, residual=residuals[i]
            )
            sizes.append(len(blob))
            subs.append(Submission(trainer=f"0x{i + 1:040x}", blob=blob, commit_order=i))
        previous = np.concatenate(history[-3:]) if history else None
        outcome = compute_round(spec, weights, subs, validation, previous, momentum)
        history.append(outcome.accepted_updates)
        momentum = outcome.momentum
        weights = outcome.next_weights
        _, acc = evaluate(spec.model, weights, test.x, test.y)
        accs.append(acc)
        flagged = sum(1 for o in outcome.outcomes if int(o.reason) != 0)
        print(
            f"seed {seed} {codec} round {r}: test acc {acc:.4f}, flagged {flagged}",
            file=sys.stderr,
        )
    return {"bytes": float(np.mean(sizes)), "acc": accs[-1] * 100}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trainers", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=5, help="local epochs per round")
    ap.add_argument("--lr", type=float, default=0.5, help="local learning rate")
    ap.add_argument("--topk-fraction", type=float, default=DEFAULT_TOPK_FRACTION)
    ap.add_argument("--seeds", type=int, default=3, help="runs per codec (seeds 0..n-1)")
    ap.add_argument("--json", action="store_true", help="print the JSON summary line")
    args = ap.parse_args()
    summary: dict[str, float | int] = {}
    for c in ("fp32", "int8", "topk"):
        runs = [
            run_codec(c, args.trainers, args.rounds, args.topk_fraction, seed, args.epochs, args.lr)
            for seed in range(args.seeds)
        ]
        summary[f"{c}_bytes"] = round(float(np.mean([r["bytes"] for r in runs])))
        summary[f"{c}_acc"] = round(float(np.mean([r["acc"] for r in runs])), 2)
        print(f"{c}: accuracy per seed {[round(r['acc'], 2) for r in runs]}", file=sys.stderr)
    summary = {k: summary[k] for k in sorted(summary, key=lambda k: (k.endswith("acc"), k))}
    print(
        f"int8: {summary['fp32_bytes'] / summary['int8_bytes']:.2f}x smaller, "
        f"{summary['fp32_acc'] - summary['int8_acc']:+.2f} points lost; "
        f"top-k: {summary['fp32_bytes'] / summary['topk_bytes']:.2f}x smaller, "
        f"{summary['fp32_acc'] - summary['topk_acc']:+.2f} points lost",
        file=sys.stderr,
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
