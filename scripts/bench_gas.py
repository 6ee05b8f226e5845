#!/usr/bin/env python3
"""Gas benchmark of FedMarket on the in-process EVM (eth-tester + py-evm).

Runs two identical jobs on a FedMarketSeparatePost deployment (N trainers, R rounds, ~10% of
trainers flagged as outliers each round): job A posts every round with the batched
``postRound``; job B posts the same results one trainer per transaction
(``postResultSingle`` x N + ``closeRoundSingle``). Each post is followed by the round's
validation-chunk reveal (the happy path: no challenge). Then job C measures one whole dispute
at N trainers: a lying post (an honest trainer flagged), a challenge, three committee votes
(commit + reveal), the decision and the correction. Gas is exact, so results are deterministic.

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
from backend.core.valchunks import MerkleTree, chunk_leaf

ETH = 10**18
GAS = 15_000_000
OUTLIER = 8
VERIFIERS = 3


class Bench:
    def __init__(self, trainers: int) -> None:
        state = PyEVMBackend.generate_genesis_state(num_accounts=trainers + 2 + VERIFIERS)
        params = PyEVMBackend.generate_genesis_params(
            overrides={"timestamp": 4_000_000_000, "gas_limit": 60_000_000}
        )
        self.tester = EthereumTester(PyEVMBackend(genesis_parameters=params, genesis_state=state))
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        accts = list(self.w3.eth.accounts)
        self.owner, self.agg = accts[0], accts[1]
        self.verifiers, self.trainers = accts[2 : 2 + VERIFIERS], accts[2 + VERIFIERS :]
        self.m = self.deploy("FedMarketSeparatePost", 300_000, 0)
        self.court = self.deploy("DisputeCourt", self.m.address, ETH // 10, ETH // 10)
        self.send(self.m.functions.bindCourt(self.court.address), self.owner)
        self.send(self.m.functions.registerRole(1), self.agg, 5000 * ETH)
        for v in self.verifiers:
            self.send(self.m.functions.registerRole(2), v, ETH)
            self.send(self.court.functions.joinPool(), v)
        # One chunk per round: (sha256, cid, salt) and the Merkle tree over their leaves.
        self.chunks: list[tuple[bytes, str, bytes]] = []
        self.tree: MerkleTree | None = None

    def deploy(self, name: str, *args: Any) -> Any:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = self.send(factory.constructor(*args), self.owner)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])

    def send(self, fn: Any, sender: str, value: int = 0) -> Any:
        """Send `fn` from `sender` and return its receipt; a revert raises RuntimeError."""
        h = fn.transact({"from": sender, "value": value, "gas": GAS})
        receipt = self.w3.eth.get_transaction_receipt(h)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction reverted: {fn}")
        return receipt

    def gas(self, fn: Any, sender: str, value: int = 0) -> int:
        return int(self.send(fn, sender, value)["gasUsed"])

    def create_job(self, rounds: int, window: int = 0) -> int:
        n = len(self.trainers)
        job = int(self.m.functions.nextJobId().call())
        self.chunks = [
            (hashlib.sha256(f"chunk{r}".encode()).digest(), f"bafy-val-{r}", keccak(b"s%d" % r))
            for r in range(1, rounds + 1)
        ]
        self.tree = MerkleTree([chunk_leaf(r + 1, *c) for r, c in enumerate(self.chunks)])
        params = (
            self.agg,
            ETH,
            0,  # aggregatorBond: the default, the reward
            rounds,
            n,
            n,
            10_000,
            1_000,
            1_000,
            1_000,
            window,  # challengeWindow (0: final right after the chunk reveal)
            0,  # minReliabilityPpm
            0,  # minReliabilityWeight
            1000,
            b"\x01" * 32,
            "bafy-spec",
            b"\x02" * 32,
            "bafy-model-0",
            self.tree.root,
        )
        self.send(self.m.functions.createJob(params), self.owner, 1000 * ETH + 7)
        return job

    def reveal_chunk(self, job: int, rnd: int) -> int:
        assert self.tree is not None
        h, cid, salt = self.chunks[rnd - 1]
        fn = self.m.functions.revealValidationChunk(
            job, rnd, h, cid, salt, self.tree.proof(rnd - 1)
        )
        return self.gas(fn, self.owner)

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
    keys = ("commit", "reveal", "batched", "separate", "chunk", "round_a")
    stats: dict[str, list[int]] = {k: [] for k in keys}
    for rnd in range(1, rounds + 1):
        scores, reasons = results(trainers, rnd)
        model = (bytes([rnd]) * 32, f"bafy-model-{rnd}")
        before = len(stats["commit"]), len(stats["reveal"])
        b.commit_reveal(job_a, rnd, stats)
        fn = b.m.functions.postRound(job_a, rnd, *model, scores, reasons)
        stats["batched"].append(b.gas(fn, b.agg))
        stats["chunk"].append(b.reveal_chunk(job_a, rnd))
        stats["round_a"].append(
            sum(stats["commit"][before[0] :])
            + sum(stats["reveal"][before[1] :])
            + stats["batched"][-1]
            + stats["chunk"][-1]
        )
        b.commit_reveal(job_b, rnd, {"commit": [], "reveal": []})
        total = 0
        for i in range(trainers):
            fn = b.m.functions.postResultSingle(job_b, rnd, i, scores[i], reasons[i])
            total += b.gas(fn, b.agg)
        total += b.gas(b.m.functions.closeRoundSingle(job_b, rnd, *model), b.agg)
        stats["separate"].append(total)
        b.reveal_chunk(job_b, rnd)
    # both paths must leave identical job state
    ja, jb = b.m.functions.getJob(job_a).call(), b.m.functions.getJob(job_b).call()
    for field in (27, 28, 12):  # totalScore, maxTotalScore, slashedPool
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
        "chunk_reveal_gas": round(sum(stats["chunk"]) / len(stats["chunk"])),
        "happy_round_gas_per_trainer": per_trainer(stats["round_a"]),
        "finalize_gas_per_trainer": round(finalize_gas / trainers),
        "claim_gas": round(sum(claim) / len(claim)),
        "dispute_gas": dispute_cost(b),
    }


def dispute_cost(b: Bench) -> dict[str, int]:
    """Gas of one whole dispute on a one-round job: the lying post flags trainer 0."""
    n = len(b.trainers)
    job = b.create_job(1, window=1_000)
    for t in b.trainers:
        b.send(b.m.functions.join(job), t)
    b.commit_reveal(job, 1, {"commit": [], "reveal": []})
    honest = ([1_000_000] * n, [0] * n)
    lie = ([0] + [1_000_000] * (n - 1), [OUTLIER] + [0] * (n - 1))
    model = (b"\x09" * 32, "bafy-model-1")
    b.send(b.m.functions.postRound(job, 1, *model, *lie), b.agg)
    b.reveal_chunk(job, 1)
    digest = b.m.functions.digestOf(job, 1, (model[0], *honest)).call()
    gas = {"challenge": b.gas(b.court.functions.challenge(job, 1, digest), b.trainers[1])}
    dispute = int(b.court.functions.nextDisputeId().call()) - 1
    salts = {v: keccak(v.encode()) for v in b.verifiers}
    commits = [
        b.gas(
            b.court.functions.commitVote(
                dispute,
                keccak(
                    abi_encode(
                        ["bytes32", "bytes32", "address", "uint256"], [digest, salts[v], v, dispute]
                    )
                ),
            ),
            v,
        )
        for v in b.verifiers
    ]
    reveals = [
        b.gas(b.court.functions.revealVote(dispute, digest, salts[v]), v) for v in b.verifiers
    ]
    gas["votes"] = sum(commits) + sum(reveals)
    gas["resolve"] = b.gas(b.court.functions.resolve(dispute), b.trainers[1])
    fix, posted = (model[0], *honest), (model[0], *lie)
    fn = b.court.functions.postCorrection(dispute, fix, model[1], posted)
    gas["correction"] = b.gas(fn, b.trainers[1])
    gas["total"] = sum(gas.values())
    return gas


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
