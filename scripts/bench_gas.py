#!/usr/bin/env python3
"""Gas benchmark of FedMarket on the in-process EVM (eth-tester + py-evm).

Runs two identical jobs on a FedMarketSeparatePost deployment (N trainers, R rounds, ~10% of
trainers flagged as outliers each round): job A posts every round with the batched
``postRound``; job B posts the same results one trainer per transaction
(``postResultSingle`` x N + ``closeRoundSingle``). Gas is exact, so results are deterministic.

    python scripts/bench_gas.py [--trainers 50] [--rounds 10] [--json]

``--json`` prints the summary as the last stdout line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_abi import encode as abi_encode
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from backend.chain.contracts import load_artifact

ETH = 10**18
GAS = 15_000_000
OUTLIER = 8


class Bench:
    def __init__(self, trainers: int) -> None:
        state = PyEVMBackend.generate_genesis_state(num_accounts=trainers + 2)
        params = PyEVMBackend.generate_genesis_params(
            overrides={"timestamp": 4_000_000_000, "gas_limit": 60_000_000}
        )
        self.tester = EthereumTester(PyEVMBackend(genesis_parameters=params, genesis_state=state))
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        accts = list(self.w3.eth.accounts)
        self.owner, self.agg, self.trainers = accts[0], accts[1], accts[2:]
        art = load_artifact("FedMarketSeparatePost")
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = self.send(factory.constructor(300_000), self.owner)
        self.m = self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])

    def send(self, fn: Any, sender: str, value: int = 0) -> Any:
        """Send `fn` from `sender` and return its receipt; a revert raises RuntimeError."""
        h = fn.transact({"from": sender, "value": value, "gas": GAS})
        receipt = self.w3.eth.get_transaction_receipt(h)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction reverted: {fn}")
        return receipt

    def gas(self, fn: Any, sender: str, value: int = 0) -> int:
        return int(self.send(fn, sender, value)["gasUsed"])

    def create_job(self, rounds: int) -> int:
        n = len(self.trainers)
        job = int(self.m.functions.nextJobId().call())
        params = (
            self.agg,
            ETH,
            rounds,
            n,
            n,
            10_000,
            1_000,
            1_000,
            1_000,
            0,
            1000,
            b"\x01" * 32,
            "bafy-spec",
            b"\x02" * 32,
            "bafy-model-0",
            keccak(abi_encode(["bytes32", "string"], [b"\x03" * 32, "bafy-val"])),
        )
        self.send(self.m.functions.createJob(params), self.owner, 1000 * ETH + 7)
        return job

    def commit_reveal(self, job: int, rnd: int, stats: dict[str, list[int]]) -> None:
        opened = []
        for t in self.trainers:
            blob = f"{job}:{rnd}:{t}".encode()
            h, cid, salt = hashlib.sha256(blob).digest(), f"bafy{h_hex(blob)}", keccak(blob)
            c = keccak(
                abi_encode(
                    ["bytes32", "string", "bytes32", "address", "uint256", "uint32"],
                    [h, cid, salt, t, job, rnd],
                )
            )
            stats["commit"].append(self.gas(self.m.functions.commit(job, c), t))
            opened.append((t, h, cid, salt))
        for t, h, cid, salt in opened:  # the last commit closed the commit phase early
            stats["reveal"].append(self.gas(self.m.functions.reveal(job, h, cid, salt), t))


def h_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:46]


def results(n: int, rnd: int) -> tuple[list[int], list[int]]:
    """Deterministic scores; ~10% of trainers flagged (reason 8, score 0), rotating."""
    flagged = max(1, n // 10)
    scores, reasons = [], []
    for i in range(n):
        if (i + rnd) % n < flagged:
            scores.append(0)
            reasons.append(OUTLIER)
        else:
            scores.append(500_000 + (i * 7919 + rnd * 104_729) % 1_000_000)
            reasons.append(0)
    return scores, reasons


def run_bench(trainers: int = 50, rounds: int = 10) -> dict[str, Any]:
    b = Bench(trainers)
    for t in b.trainers:
        b.send(b.m.functions.register(), t, 10 * ETH)
    job_a, job_b = b.create_job(rounds), b.create_job(rounds)
    for job in (job_a, job_b):
        for t in b.trainers:
            b.send(b.m.functions.join(job), t)  # the last join starts the job
    stats: dict[str, list[int]] = {"commit": [], "reveal": [], "batched": [], "separate": []}
    for rnd in range(1, rounds + 1):
        scores, reasons = results(trainers, rnd)
        model = (bytes([rnd]) * 32, f"bafy-model-{rnd}")
        b.commit_reveal(job_a, rnd, stats)
        fn = b.m.functions.postRound(job_a, rnd, *model, scores, reasons)
        stats["batched"].append(b.gas(fn, b.agg))
        b.commit_reveal(job_b, rnd, stats)
        total = 0
        for i in range(trainers):
            fn = b.m.functions.postResultSingle(job_b, rnd, i, scores[i], reasons[i])
            total += b.gas(fn, b.agg)
        total += b.gas(b.m.functions.closeRoundSingle(job_b, rnd, *model), b.agg)
        stats["separate"].append(total)
    # both paths must leave identical job state
    ja, jb = b.m.functions.getJob(job_a).call(), b.m.functions.getJob(job_b).call()
    for field in (23, 24, 10):  # totalScore, maxTotalScore, slashedPool
        assert ja[field] == jb[field], (field, ja[field], jb[field])
    finalize_gas = b.gas(b.m.functions.finalize(job_a), b.owner)
    claim = [b.gas(b.m.functions.claim(job_a), t) for t in b.trainers]

    def per_trainer(xs: list[int]) -> int:
        return round(sum(xs) / len(xs) / trainers)

    batched = per_trainer(stats["batched"])
    separate = per_trainer(stats["separate"])
    return {
        "trainers": trainers,
        "rounds": rounds,
        "batched_post_gas_per_trainer": batched,
        "separate_post_gas_per_trainer": separate,
        "saving": round(1 - batched / separate, 4),
        "commit_gas": round(sum(stats["commit"]) / len(stats["commit"])),
        "reveal_gas": round(sum(stats["reveal"]) / len(stats["reveal"])),
        "finalize_gas_per_trainer": round(finalize_gas / trainers),
        "claim_gas": round(sum(claim) / len(claim)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FedMarket gas benchmark")
    parser.add_argument("--trainers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the JSON summary last")
    args = parser.parse_args(argv)
    out = run_bench(args.trainers, args.rounds)
    if args.json:
        print(json.dumps(out))
    else:
        width = max(len(k) for k in out)
        for k, v in out.items():
            print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
