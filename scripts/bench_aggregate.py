#!/usr/bin/env python3
"""Benchmark our Multi-Krum aggregation against Flower's ``aggregate_krum``.

One run, one set of seeded float32 updates (honest rows = common direction + noise, plus
``num_malicious`` outliers: sign-flipped x4, large-norm Gaussian noise, shifted), timing:

* ``ours_s``: ``multi_krum_aggregate`` = float32 Gram of the centred rows (per column block,
  summed in float64) -> float64 distances -> Krum scores ->
  selection -> float64 mean of the selected rows (best of ``--repeats``);
* ``floor_s``: one float32 Gram product ``x @ x.T`` of the same updates (best of repeats);
* ``flower_krum_s``: ``flwr.server.strategy.aggregate.aggregate_krum`` once, each client
  holding ONE ndarray of size d (null, with a note on stderr, if flwr is not importable);
* ``scoring_s``: contribution scoring of the same round: a float32 Gram plus one GEMV
  against a synthetic validation gradient, then leave-one-out and 32-permutation
  Monte-Carlo Shapley with a quadratic (second-order Taylor) model of the validation loss
  of the subset's mean update, ``v(S) = eta <mean_S, g_val> - (eta^2 c / 2) |mean_S|^2``,
  evaluated from the Gram matrix in O(|S|^2).  A real round evaluates the model on data
  per subset instead, which costs far more; this isolates the scoring machinery.

``same_selection`` compares Flower's aggregate with our mean of the selected rows
(allclose at float32 precision; swapping a single selected row for an unselected one moves
the mean by ~|x_a - x_b| / to_keep, orders of magnitude above the tolerance).

``peak_rss_mb`` is the process's peak resident set (``resource.getrusage().ru_maxrss``)
right after our path ran: inputs (n*d*4 bytes) + interpreter + our temporaries; nothing of
Flower is imported or run before that point.  The increase over the pre-run peak (our
path's own extra memory) and tracemalloc's peak of traced (numpy) allocations during our
path are printed on stderr.

Usage: ``python scripts/bench_aggregate.py --json --n 100 --d 1000000``; the JSON object is
the last stdout line.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator.rules.multi_krum import multi_krum_aggregate
from aggregator.rules.scoring import leave_one_out, shapley_monte_carlo


def _rss_peak_mb() -> float:
    # Linux reports ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def make_updates(n: int, d: int, num_outliers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded float32 updates, filled in place (no n x d temporaries); returns (x, outliers)."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(d, dtype=np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for i in range(n):
        rng.standard_normal(dtype=np.float32, out=x[i])
        x[i] *= np.float32(0.8)
        x[i] += g
    bad = np.sort(rng.choice(n, size=min(num_outliers, n - 1), replace=False))
    for k, i in enumerate(bad):
        kind = k % 3
        if kind == 0:  # sign-flipped, scaled
            x[i] *= np.float32(-4.0)
        elif kind == 1:  # large Gaussian noise
            rng.standard_normal(dtype=np.float32, out=x[i])
            x[i] *= np.float32(3.0)
        else:  # shifted
            x[i] += np.float32(2.0)
    return x, bad


def score_round(x: np.ndarray, seed: int, permutations: int = 32) -> float:
    """Time LOO + MC-Shapley with a quadratic validation-loss model (see module doc)."""
    t0 = time.perf_counter()
    n, d = x.shape
    rng = np.random.default_rng(seed + 1)
    g_val = rng.standard_normal(d, dtype=np.float32)
    gram = (x @ x.T).astype(np.float64)
    p = (x @ g_val).astype(np.float64)
    eta, curv = 1.0, 0.5 / float(np.mean(np.diag(gram)))

    def value(mask: np.ndarray) -> float:
        k = int(mask.sum())
        if k == 0:
            return 0.0
        lin = float(p[mask].sum()) / k
        quad = float(gram[np.ix_(mask, mask)].sum()) / (k * k)
        return eta * lin - 0.5 * eta * eta * curv * quad

    leave_one_out(value, n)
    shapley_monte_carlo(value, n, permutations=permutations, seed=seed)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--d", type=int, default=1_000_000)
    ap.add_argument("--num-malicious", type=int, default=None, help="default max(1, n // 20)")
    ap.add_argument("--to-keep", type=int, default=None, help="default n - num_malicious")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the JSON summary line")
    args = ap.parse_args(argv)

    n, d = args.n, args.d
    f = args.num_malicious if args.num_malicious is not None else max(1, n // 20)
    to_keep = args.to_keep if args.to_keep is not None else max(1, n - f)

    x, bad = make_updates(n, d, f, args.seed)
    gc.collect()
    rss_before = _rss_peak_mb()

    # ---- ours: selection + mean of the selected rows (memory measured on the first run)
    tracemalloc.start()
    idx, ours_mean = multi_krum_aggregate(x, f, to_keep)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ours_s = _best_of(lambda: multi_krum_aggregate(x, f, to_keep), args.repeats)
    peak_rss_mb = _rss_peak_mb()

    # ---- floor: one float32 Gram product
    floor_s = _best_of(lambda: x @ x.T, args.repeats)

    # ---- contribution scoring of the same round
    scoring_s = score_round(x, args.seed)

    # ---- Flower (imported only now, so it cannot inflate our memory figure)
    flower_s: float | None = None
    same: bool | None = None
    try:
        from flwr.server.strategy.aggregate import aggregate_krum
    except Exception as exc:  # flwr missing or broken: report nulls
        print(f"flwr not importable ({exc!r}); flower fields are null", file=sys.stderr)
    else:
        results = [([x[i]], 1) for i in range(n)]
        t0 = time.perf_counter()
        flower_agg = aggregate_krum(results, f, to_keep)
        flower_s = time.perf_counter() - t0
        flower_vec = np.asarray(flower_agg[0], dtype=np.float64).reshape(-1)
        same = bool(np.allclose(ours_mean, flower_vec, rtol=1e-4, atol=1e-4))
        del results, flower_agg, flower_vec

    size_mb = x.nbytes / 2**20
    print(
        f"n={n} d={d} f={f} to_keep={to_keep} outliers={bad.tolist()} "
        f"rejected={sorted(set(range(n)) - set(idx.tolist()))}\n"
        f"updates {size_mb:.0f} MiB; peak RSS {peak_rss_mb:.0f} MiB "
        f"(+{peak_rss_mb - rss_before:.1f} MiB over the pre-run peak); "
        f"tracemalloc peak of our path {traced_peak / 2**20:.1f} MiB",
        file=sys.stderr,
    )
    summary: dict[str, Any] = {
        "n": n,
        "d": d,
        "ours_s": round(ours_s, 6),
        "flower_krum_s": None if flower_s is None else round(flower_s, 6),
        "floor_s": round(floor_s, 6),
        "speedup": None if flower_s is None else round(flower_s / ours_s, 3),
        "over_floor": round(ours_s / floor_s, 3),
        "same_selection": same,
        "scoring_s": round(scoring_s, 6),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:>15}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
