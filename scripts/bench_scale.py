"""One job with many trainers, end to end in simulation (issue 16).

Workload: the MNIST MLP (784-64-10, 50,890 parameters: a 204 kB fp32 update), `--trainers`
trainers with 32 rows each drawn from the 5,000-image MNIST subset, one local epoch, no
attackers, on the embedded chain and a local store. The fleet trains on `--engine` (`local`:
this process; `ray`: Ray, local or `--ray-address`); the chain, the store and the aggregator
run here. See `backend.simulation.scale` for what each part of the split counts.

    python scripts/bench_scale.py --trainers 1000 --rounds 3 --json
    python scripts/bench_scale.py --trainers 1000 --rounds 3 --engine ray --json

Last line: {"trainers": int, "rounds": int, "round_s": [float], "split_s": {"training",
            "chain", "storage", "aggregation", "other"}, "peak_rss_mb": float, "gas": {"commit",
            "reveal", "post", "finalize", "claim"} (per trainer), "gas_total": {"post",
            "finalize"} (the largest post; finalize with every settle call), "split_rounds",
            "accuracy", "update_bytes", "engine"}
`peak_rss_mb` is this process's (the aggregator, the chain, and every trainer's client state;
with `--engine ray` not the Ray workers').
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.simulation.scale import ScaleConfig, run_scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--ray-address", default=None, help='"auto" or "ray://host:10001"')
    parser.add_argument("--json", action="store_true", help="print the JSON summary last")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cfg = ScaleConfig(
        trainers=args.trainers,
        rounds=args.rounds,
        engine=args.engine,
        ray_address=args.ray_address,
    )
    result = run_scale(cfg, lambda stage, done, total: print(stage, file=sys.stderr))
    out = result.as_json()
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
