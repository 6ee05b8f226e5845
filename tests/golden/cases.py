"""The golden cases: fixed seeds, every robust rule and scoring method, honest and hostile updates.

`python -m tests.golden.cases` writes `round_golden.json`; `test_golden.py` recomputes and
compares. Regenerate only when a behaviour change is intended, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aggregator.round.compute import Submission, compute_round
from backend.core import codec
from backend.core.compression import encode_update
from backend.core.datasets import load_digits_dataset, shard, split_train_validation_test
from backend.core.jobspec import AggregationSpec, JobSpec, RuleSpec
from backend.core.models import ModelSpec, build_model, get_weights, template_of
from backend.core.training import pseudo_gradient, train_local
from trainer_client import adversaries as attacks

GOLDEN = Path(__file__).with_name("round_golden.json")
RULES = ("multi_krum", "median", "trimmed_mean", "norm_bound", "cosine", "cosine_norm", "consensus")
SCORINGS = ("information", "loss_gain", "loo", "shapley")
CODECS = ("int8", "topk")
HONEST = 6
ROUNDS = 2


def spec_for(rule: str, scoring: str, codec_name: str = "fp32") -> JobSpec:
    agg = AggregationSpec(
        rule=RuleSpec(name=rule, num_malicious=2),  # type: ignore[arg-type]
        scoring=scoring,  # type: ignore[arg-type]
        shapley_permutations=4,
        outer="nesterov",
    )
    return JobSpec(model=ModelSpec(hidden=[16]), aggregation=agg, codec=codec_name)  # type: ignore[arg-type]


def _round_inputs(spec: JobSpec, w: codec.Tensors, shards: list, r: int) -> list[Submission]:
    deltas = []
    for i, part in enumerate(shards):
        w_local, _ = train_local(spec.model, w, part, spec.training, seed=100 * r + i)
        deltas.append(pseudo_gradient(w, w_local))
    rng = np.random.default_rng(r)
    template = template_of(spec.model)
    blobs = [encode_update(d, template, spec.codec)[0] for d in deltas]
    hostile = [
        codec.encode(attacks.sign_flip(deltas[0])),
        codec.encode(attacks.gaussian_noise(deltas[1], rng)),
        codec.encode(attacks.near_zero(deltas[2])),
        blobs[3],  # a verbatim copy, committed later
        b"not safetensors",
    ]
    subs = [Submission(f"0x{i + 1:040x}", b, commit_order=i) for i, b in enumerate(blobs)]
    subs += [
        Submission(f"0x{0xA0 + j:040x}", b, commit_order=HONEST + j) for j, b in enumerate(hostile)
    ]
    subs.append(Submission(f"0x{0xF0:040x}", None, commit_order=HONEST + len(hostile)))
    return subs


def run_case(spec: JobSpec) -> list[dict[str, Any]]:
    """Two chained rounds (previous updates and momentum carried), as the driver runs them.

    Torch runs on one thread here: how its kernels split a reduction across threads changes the
    last bits of the local training, so the pinned hashes would otherwise depend on the core
    count (OMP_NUM_THREADS) as well as on the kind of CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_case(spec)
    finally:
        torch.set_num_threads(threads)


def _run_case(spec: JobSpec) -> list[dict[str, Any]]:
    data = load_digits_dataset()
    train, val, _ = split_train_validation_test(data, seed=3)
    shards = shard(train, HONEST, seed=3, non_iid_alpha=0.5)
    w = get_weights(build_model(spec.model))
    history: list[np.ndarray] = []
    momentum = None
    rounds = []
    for r in range(1, ROUNDS + 1):
        subs = _round_inputs(spec, w, shards, r)
        previous = np.concatenate(history) if history else None
        out = compute_round(spec, w, subs, val, previous, momentum)
        rounds.append(
            {
                "scores_fp": out.scores_fp,
                "reasons": out.reasons,
                "model_sha256": hashlib.sha256(out.next_model_blob).hexdigest(),
                "loss_after": round(out.loss_after, 12),
            }
        )
        history.append(out.accepted_updates)
        momentum, w = out.momentum, out.next_weights
    return rounds


def all_cases() -> dict[str, list[dict[str, Any]]]:
    cases = {f"{r}/{s}": run_case(spec_for(r, s)) for r in RULES for s in SCORINGS}
    cases.update(
        {
            f"consensus/loss_gain/{c}": run_case(spec_for("consensus", "loss_gain", c))
            for c in CODECS
        }
    )
    return cases


def cpu_kind() -> str:
    """What picks torch's and OpenBLAS's float kernels: architecture, vendor, AVX-512 or not.

    The cases train locally with torch, whose float32 kernels differ by CPU (the same inputs
    give updates that differ in the last bits on an Intel Xeon and an AMD EPYC), so the pinned
    model hashes hold per kind of CPU.
    """
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    vendor = next((ln.split(":")[1].strip() for ln in info.splitlines() if "vendor_id" in ln), "")
    avx512 = "avx512" if " avx512f" in info else "no-avx512"
    return f"{platform.machine()}/{vendor or platform.processor() or 'unknown'}/{avx512}"


def recorded() -> dict[str, Any]:
    """The golden results recorded so far, by kind of CPU."""
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


if __name__ == "__main__":
    goldens = recorded() | {cpu_kind(): all_cases()}
    GOLDEN.write_text(json.dumps(goldens, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} for {cpu_kind()}")
