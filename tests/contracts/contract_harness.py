"""In-process EVM harness for the FedMarket contract tests (web3 + eth-tester/py-evm).

Contracts are deployed from the committed artifacts (``backend.chain.contracts.load_artifact``),
so these tests need neither node nor solc. Reverts are asserted by custom-error *name*: the
revert data's selector is matched against every error in the artifacts' ABIs.

Every chain deploys a FedMarket (``ALPHA_PPM``, ``MIN_CHALLENGE_WINDOW``) and its DisputeCourt
(``CHALLENGE_BOND``, ``VOTE_BOND``), bound to each other. Jobs get a validation Merkle root over
one chunk per round (``ValidationSet``); the harness keeps each job's set so tests can reveal a
round's chunk with its proof.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak, to_canonical_address, to_checksum_address
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.logs import DISCARD

from backend.chain.contracts import load_artifact

ETH = 10**18
ALPHA_PPM = 300_000
MIN_CHALLENGE_WINDOW = 10
CHALLENGE_WINDOW = 50  # default window of the harness's jobs
# Odd bonds, so every split leaves a remainder somewhere.
CHALLENGE_BOND = 10**17 + 3
VOTE_BOND = 10**17 + 1
ROLE_AGGREGATOR, ROLE_VERIFIER = 1, 2
ARTIFACTS = (
    "FedMarket",
    "DisputeCourt",
    "ReliabilityRegistry",
    "FedMarketSeparatePost",
    "ReentrantClaimer",
)
# Genesis balance well above 2**96 wei so the AmountTooLarge paths are reachable.
GENESIS_BALANCE = 10**30
GENESIS_TIME = 4_000_000_000  # year 2096
TX_GAS = 12_000_000
# StakeVault's `_accounts` mapping is FedMarket's storage slot 0 (OpenZeppelin 5's
# ReentrancyGuard keeps its flag in a namespaced slot) and `_jobs` slot 3 (FedMarketBase's
# layout: `_cooldownUntil`, then `nextJobId`, come between): `Chain.vault` and
# `Chain.status` read them directly (test_harness_reads_storage_like_the_views checks them).
ACCOUNTS_SLOT = 0
JOBS_SLOT = 3

# Status / reason codes (SPEC.md).
NONE, CREATED, RUNNING, FINISHED, SETTLED, ABANDONED, CANCELLED = range(7)
ACCEPTED, MISSING, UNAVAILABLE, MISMATCH = 0, 1, 2, 3
OUTLIER = 8
# Dispute states (DisputeCourt).
D_NONE, D_VOTING, D_UPHELD, D_OVERTURNED, D_CORRECTED, D_NO_DECISION = range(6)


PPM = 10**6


def fold_reliability(prev: list[int], c: int, stake: int, alpha: int = ALPHA_PPM) -> list[int]:
    """ReliabilityRegistry's update, in Python: [ppm, jobs, weight] after a job with
    contribution ``c`` (ppm) at stake ``stake`` (wei)."""
    ppm, jobs, weight = prev
    if jobs == 0:
        return [c, 1, stake]
    decayed = weight * (PPM - alpha) // PPM
    new_weight = decayed + stake
    new_ppm = c if new_weight == 0 else (ppm * decayed + c * stake) // new_weight
    return [new_ppm, jobs + 1, new_weight]


def contribution(score: int, max_score: int) -> int:
    """A job's contribution (ppm) of a trainer's ``score`` against ``max_score``."""
    if score >= max_score:
        return 0 if score == 0 else PPM
    return score * PPM // max_score


def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    table: dict[bytes, tuple[str, list[str]]] = {}
    for name in ARTIFACTS:
        for item in load_artifact(name)["abi"]:
            if item["type"] != "error":
                continue
            types = [i["type"] for i in item["inputs"]]
            sig = f"{item['name']}({','.join(types)})"
            table[keccak(text=sig)[:4]] = (item["name"], types)
    table[keccak(text="Panic(uint256)")[:4]] = ("Panic", ["uint256"])
    table[keccak(text="Error(string)")[:4]] = ("Error", ["string"])
    return table


ERRORS = _error_table()
SEEN_ERRORS: set[str] = set()


def revert_data(exc: BaseException) -> bytes:
    """Raw revert data of an eth-tester TransactionFailed (web3 stringifies the bytes)."""
    msg = exc.args[0] if exc.args else ""
    if isinstance(msg, bytes):
        return msg
    prefix = "execution reverted: "
    text = str(msg)
    if text.startswith(prefix):
        text = text[len(prefix) :]
    if text.startswith(("b'", 'b"')):
        value = ast.literal_eval(text)
        assert isinstance(value, bytes)
        return value
    raise AssertionError(f"revert without custom-error data: {msg!r}")


def decode_error(data: bytes) -> tuple[str, tuple[Any, ...]]:
    if len(data) < 4 or data[:4] not in ERRORS:
        raise AssertionError(f"unknown revert data {data.hex()}")
    name, types = ERRORS[data[:4]]
    values = abi_decode(types, data[4:])
    return name, tuple(
        to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
    )


# ------------------------------------------------------------------------------ hashes


def commitment(
    content_hash: bytes, cid: str, salt: bytes, trainer: str, job: int, rnd: int
) -> bytes:
    return keccak(
        abi_encode(
            ["bytes32", "string", "bytes32", "address", "uint256", "uint32"],
            [content_hash, cid, salt, trainer, job, rnd],
        )
    )


def digest_of(
    job: int, rnd: int, model_hash: bytes, scores: Iterable[int], reasons: Iterable[int]
) -> bytes:
    """FedMarket.digestOf: keccak256(abi.encode(jobId, round, modelHash, scores, reasons))."""
    return keccak(
        abi_encode(
            ["uint256", "uint32", "bytes32", "uint64[]", "uint8[]"],
            [job, rnd, model_hash, list(scores), list(reasons)],
        )
    )


def vote_commitment(digest: bytes, salt: bytes, member: str, dispute: int) -> bytes:
    """DisputeCourt.commitVote: keccak256(abi.encode(digest, salt, member, disputeId))."""
    return keccak(
        abi_encode(["bytes32", "bytes32", "address", "uint256"], [digest, salt, member, dispute])
    )


def _hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin Hashes.commutativeKeccak256: keccak of the sorted pair."""
    return keccak(a + b) if a < b else keccak(b + a)


def merkle_tree(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """Root and per-leaf proofs of a sorted-pair (OpenZeppelin MerkleProof) tree; an odd node
    is carried up unchanged."""
    assert leaves
    layers = [list(leaves)]
    while len(layers[-1]) > 1:
        cur = layers[-1]
        nxt = [_hash_pair(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])
        layers.append(nxt)
    proofs = []
    for index in range(len(leaves)):
        proof, i = [], index
        for layer in layers[:-1]:
            sibling = i ^ 1
            if sibling < len(layer):
                proof.append(layer[sibling])
            i //= 2
        proofs.append(proof)
    return layers[-1][0], proofs


@dataclass(frozen=True)
class Chunk:
    round: int
    content_hash: bytes
    cid: str
    salt: bytes

    def leaf(self) -> bytes:
        inner = keccak(
            abi_encode(
                ["uint32", "bytes32", "string", "bytes32"],
                [self.round, self.content_hash, self.cid, self.salt],
            )
        )
        return keccak(inner)


@dataclass
class ValidationSet:
    """One validation chunk per round under a Merkle root (what the owner commits to)."""

    chunks: list[Chunk]
    root: bytes = field(init=False)
    proofs: list[list[bytes]] = field(init=False)

    def __post_init__(self) -> None:
        self.root, self.proofs = merkle_tree([c.leaf() for c in self.chunks])

    @classmethod
    def make(cls, rounds: int, tag: str = "val") -> ValidationSet:
        return cls(
            [
                Chunk(
                    r,
                    hashlib.sha256(f"{tag}:{r}".encode()).digest(),
                    f"bafy-{tag}-{r}",
                    keccak(text=f"salt:{tag}:{r}"),
                )
                for r in range(1, rounds + 1)
            ]
        )

    def chunk(self, rnd: int) -> Chunk:
        return self.chunks[rnd - 1]

    def proof(self, rnd: int) -> list[bytes]:
        return self.proofs[rnd - 1]


@dataclass
class Update:
    content_hash: bytes
    cid: str
    salt: bytes


def make_update(trainer: str, job: int, rnd: int) -> Update:
    """A trainer's update for a round; the salt is derived too, so runs are reproducible
    (block hashes, hence committee draws, depend on every transaction's bytes)."""
    blob = f"{trainer}:{job}:{rnd}".encode()
    return Update(
        hashlib.sha256(blob).digest(), f"bafy-{job}-{rnd}-{trainer[2:10]}", keccak(b"salt:" + blob)
    )


PARAM_KEYS = (
    "aggregator",
    "stakeRequired",
    "aggregatorBond",
    "rounds",
    "minTrainers",
    "maxTrainers",
    "joinDuration",
    "commitDuration",
    "revealDuration",
    "postDuration",
    "challengeWindow",
    "minReliabilityPpm",
    "minReliabilityWeight",
    "slashBps",
    "specHash",
    "specCid",
    "initialModelHash",
    "initialModelCid",
    "validationRoot",
)


def job_params(aggregator: str, **kw: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "aggregator": aggregator,
        "stakeRequired": ETH,
        "aggregatorBond": 0,
        "rounds": 2,
        "minTrainers": 2,
        "maxTrainers": 3,
        "joinDuration": 1000,
        "commitDuration": 100,
        "revealDuration": 100,
        "postDuration": 100,
        "challengeWindow": CHALLENGE_WINDOW,
        "minReliabilityPpm": 0,
        "minReliabilityWeight": 0,
        "slashBps": 1000,
        "specHash": b"\x11" * 32,
        "specCid": "bafy-spec",
        "initialModelHash": b"\x22" * 32,
        "initialModelCid": "bafy-model-0",
    }
    p.update(kw)
    if "validationRoot" not in p:
        p["validationRoot"] = ValidationSet.make(max(1, min(p["rounds"], 1000))).root
    return p


def params_tuple(p: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(p[k] for k in PARAM_KEYS)


def model_hash(rnd: int) -> bytes:
    """The model hash the harness posts for round ``rnd``."""
    return bytes([rnd]) * 32


@dataclass
class Posted:
    """A round result as posted (RoundPosted) or as a correction."""

    model_hash: bytes
    scores: list[int]
    reasons: list[int]
    model_cid: str = ""

    def as_tuple(self) -> tuple[bytes, list[int], list[int]]:
        return (self.model_hash, list(self.scores), list(self.reasons))

    def digest(self, job: int, rnd: int) -> bytes:
        return digest_of(job, rnd, self.model_hash, self.scores, self.reasons)


@dataclass
class Chain:
    """One fresh in-process chain with a deployed market and its bound court."""

    num_accounts: int = 16
    alpha: int = ALPHA_PPM
    contract: str = "FedMarket"
    min_window: int = MIN_CHALLENGE_WINDOW
    tester: EthereumTester = field(init=False)
    w3: Web3 = field(init=False)
    accounts: list[str] = field(init=False)
    market: Contract = field(init=False)
    court: Contract = field(init=False)
    registry: Contract = field(init=False)
    validation: dict[int, ValidationSet] = field(init=False, default_factory=dict)
    posted: dict[tuple[int, int], Posted] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        state = PyEVMBackend.generate_genesis_state(
            overrides={"balance": GENESIS_BALANCE}, num_accounts=self.num_accounts
        )
        # Genesis far in the future: block timestamps are then parent + 1 (py-evm takes
        # max(wall clock, parent + 1)), so every run sees the same timestamps.
        params = PyEVMBackend.generate_genesis_params(
            overrides={"timestamp": GENESIS_TIME, "gas_limit": 60_000_000}
        )
        self.tester = EthereumTester(PyEVMBackend(genesis_parameters=params, genesis_state=state))
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.accounts = list(self.w3.eth.accounts)
        self.market = self.deploy(self.contract, self.alpha, self.min_window)
        self.court = self.deploy("DisputeCourt", self.market.address, CHALLENGE_BOND, VOTE_BOND)
        self.tx(self.market.functions.bindCourt(self.court.address), self.accounts[0])
        self.registry = self.w3.eth.contract(
            address=self.market.functions.reliability().call(),
            abi=load_artifact("ReliabilityRegistry")["abi"],
        )

    # -- contracts ---------------------------------------------------------------------------
    def deploy(self, name: str, *args: Any, sender: str | None = None) -> Contract:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        h = factory.constructor(*args).transact({"from": sender or self.accounts[0]})
        receipt = self.w3.eth.wait_for_transaction_receipt(h)
        assert receipt["status"] == 1
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])

    def tx(self, fn: Any, sender: str, value: int = 0, gas: int = TX_GAS) -> Any:
        """Send ``fn`` and return its receipt (it must succeed). The gas limit is explicit:
        eth-tester's gas estimation would run the transaction a dozen times."""
        h = fn.transact({"from": sender, "value": value, "gas": gas})
        receipt = self.w3.eth.get_transaction_receipt(h)
        if receipt["status"] != 1:
            self.why(fn, sender, value)  # raises with the reason (a revert mines nothing new)
        return receipt

    def why(self, fn: Any, sender: str, value: int = 0) -> None:
        """Raise an AssertionError naming the custom error ``fn`` reverts with, now."""
        try:
            fn.call({"from": sender, "value": value}, block_identifier="pending")
        except TransactionFailed as exc:
            raise AssertionError(f"transaction reverted: {decode_error(revert_data(exc))}") from exc
        raise AssertionError("transaction reverted (ran out of gas?)")

    def reverts(self, name: str, fn: Any, sender: str, value: int = 0) -> tuple[Any, ...]:
        """Assert that ``fn``, sent now, reverts with custom error ``name``; return its args.
        (Run as a call on the pending block: same timestamp and state, nothing mined.)"""
        try:
            if hasattr(fn, "call"):
                fn.call({"from": sender, "value": value}, block_identifier="pending")
            else:  # a constructor: its gas estimate reverts
                fn.transact({"from": sender, "value": value})
        except TransactionFailed as exc:
            got, args = decode_error(revert_data(exc))
            assert got == name, f"expected {name}, reverted with {got}{args}"
            SEEN_ERRORS.add(name)
            return args
        raise AssertionError(f"expected revert {name}, transaction succeeded")

    def events(self, name: str, receipt: Any, contract: Contract | None = None) -> list[dict]:
        """Decoded ``name`` events of ``receipt`` (market events; else the court's or the
        reliability registry's)."""
        if contract is None:
            contract = next(
                c for c in (self.market, self.court, self.registry) if _has_event(c, name)
            )
        return [
            dict(e["args"])
            for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)
        ]

    # -- time ----------------------------------------------------------------------------------
    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def next_timestamp(self) -> int:
        return int(self.tester.get_block_by_number("pending")["timestamp"])

    def at(self, ts: int) -> None:
        """Make the next transaction execute with ``block.timestamp == ts``."""
        pending = self.next_timestamp()
        assert ts >= pending, f"cannot travel back from {pending} to {ts}"
        if ts > pending:
            self.tester.time_travel(ts)  # mines a block at ts - 1; pending is then ts
        assert self.next_timestamp() == ts

    def at_least(self, ts: int) -> None:
        if self.next_timestamp() < ts:
            self.at(ts)

    # -- vault -----------------------------------------------------------------------------------
    def balance(self, addr: str) -> int:
        return int(self.w3.eth.get_balance(addr))

    def account(self, addr: str) -> tuple[int, int, bool]:
        return tuple(self.view(self.market.functions.accountOf(addr)))  # type: ignore[return-value]

    def _storage(self, key: bytes, offset: int = 0) -> int:
        slot = int.from_bytes(keccak(key), "big") + offset
        state = self.tester.backend.chain.get_vm().state
        return int(state.get_storage(to_canonical_address(self.market.address), slot))

    def vault(self, addr: str) -> tuple[int, int, bool, int]:
        """(balance, locked, registered, roles) of ``addr`` read straight from the market's
        storage (no EVM call: fast enough to check after every step of the stateful test)."""
        word = self._storage(
            bytes(12) + to_canonical_address(addr) + ACCOUNTS_SLOT.to_bytes(32, "big")
        )
        mask = (1 << 120) - 1
        return word & mask, (word >> 120) & mask, bool((word >> 240) & 0xFF), word >> 248

    def status(self, job: int) -> int:
        """A job's status, read straight from storage (slot 0 of the Job struct, bits 224..)."""
        word = self._storage(job.to_bytes(32, "big") + JOBS_SLOT.to_bytes(32, "big"))
        return (word >> 224) & 0xFF

    def slashed_pool(self, job: int) -> int:
        """A job's slashedPool, read straight from storage (slot 6 of the Job struct)."""
        word = self._storage(job.to_bytes(32, "big") + JOBS_SLOT.to_bytes(32, "big"), 6)
        return word & ((1 << 128) - 1)

    def view(self, fn: Any) -> Any:
        """Call a view (with an explicit sender: web3 would otherwise ask for the accounts)."""
        return fn.call({"from": self.accounts[0]})

    def reliability(self, addr: str) -> list[int]:
        """[ppm, jobs, weight] of ``addr`` in the market's reliability registry."""
        return list(self.view(self.registry.functions.reliabilityOf(addr)))

    def free(self, addr: str) -> int:
        balance, locked, _ = self.account(addr)
        return balance - locked

    def register(self, addr: str, stake: int = 5 * ETH) -> None:
        self.tx(self.market.functions.register(), addr, stake)

    def register_role(self, addr: str, role: int, value: int = 0) -> Any:
        return self.tx(self.market.functions.registerRole(role), addr, value)

    def ensure_aggregator(self, addr: str, bond: int) -> None:
        """Give ``addr`` the aggregator role and at least ``bond`` wei of free stake."""
        has_role = self.market.functions.rolesOf(addr).call() & ROLE_AGGREGATOR
        short = max(0, bond - self.free(addr))
        if not has_role or short:
            self.register_role(addr, ROLE_AGGREGATOR, short)

    def join_pool(self, addr: str, value: int = 0) -> Any:
        """Take the verifier role (adding ``value``) and join the court's committee pool."""
        self.register_role(addr, ROLE_VERIFIER, value)
        return self.tx(self.court.functions.joinPool(), addr)

    def make_verifiers(self, addrs: Iterable[str], stake: int = ETH) -> None:
        for a in addrs:
            self.join_pool(a, stake)

    # -- jobs --------------------------------------------------------------------------------------
    def create_job(self, owner: str, reward: int, **kw: Any) -> int:
        """Create a job (funding the aggregator's bond if needed); remembers its chunks."""
        aggregator = kw.pop("aggregator", self.accounts[1])
        rounds = kw.get("rounds", 2)
        vset = kw.pop("vset", None) or ValidationSet.make(rounds)
        kw.setdefault("validationRoot", vset.root)
        fund = kw.pop("fund_aggregator", True)
        p = job_params(aggregator, **kw)
        if fund:
            self.ensure_aggregator(aggregator, p["aggregatorBond"] or reward)
        job = int(self.market.functions.nextJobId().call())
        self.tx(self.market.functions.createJob(params_tuple(p)), owner, reward)
        self.validation[job] = vset
        return job

    def job(self, job: int) -> dict[str, Any]:
        names = [
            o["name"]
            for o in next(i for i in self.market.abi if i.get("name") == "getJob")["outputs"][0][
                "components"
            ]
        ]
        return dict(zip(names, self.view(self.market.functions.getJob(job)), strict=True))

    def parts(self, job: int) -> list[str]:
        return list(self.view(self.market.functions.participantsOf(job)))

    def participant(self, job: int, addr: str) -> dict[str, Any]:
        names = [
            "lockedStake",
            "totalScore",
            "lastCommitRound",
            "lastRevealRound",
            "flaggedRounds",
            "claimed",
            "joined",
            "missedRounds",
            "unavailableRounds",
            "unavailableMaxScore",
            "seeded",
        ]
        return dict(
            zip(names, self.view(self.market.functions.participantOf(job, addr)), strict=True)
        )

    def commit(self, job: int, trainer: str, rnd: int) -> Update:
        u = make_update(trainer, job, rnd)
        c = commitment(u.content_hash, u.cid, u.salt, trainer, job, rnd)
        self.tx(self.market.functions.commit(job, c), trainer)
        return u

    def reveal(self, job: int, trainer: str, u: Update) -> Any:
        return self.tx(self.market.functions.reveal(job, u.content_hash, u.cid, u.salt), trainer)

    def post(
        self,
        job: int,
        rnd: int,
        scores: list[int],
        reasons: list[int],
        sender: str | None = None,
        model: bytes | None = None,
    ) -> Any:
        model = model_hash(rnd) if model is None else model
        cid = f"bafy-model-{rnd}"
        fn = self.market.functions.postRound(job, rnd, model, cid, scores, reasons)
        receipt = self.tx(fn, sender or self.job(job)["aggregator"])
        self.posted[(job, rnd)] = Posted(model, list(scores), list(reasons), cid)
        return receipt

    def reveal_chunk_fn(self, job: int, rnd: int, vset: ValidationSet | None = None) -> Any:
        vset = vset or self.validation[job]
        c = vset.chunk(rnd)
        return self.market.functions.revealValidationChunk(
            job, rnd, c.content_hash, c.cid, c.salt, vset.proof(rnd)
        )

    def reveal_chunk(self, job: int, rnd: int | None = None, sender: str | None = None) -> Any:
        rnd = self.job(job)["pendingRound"] if rnd is None else rnd
        return self.tx(self.reveal_chunk_fn(job, rnd), sender or self.accounts[0])

    def make_final(self, job: int) -> None:
        """Reveal the pending round's chunk if needed and wait out its challenge window."""
        info = self.job(job)
        if info["pendingRound"] == 0:
            return
        if info["finalAt"] == 0:
            self.reveal_chunk(job, info["pendingRound"], info["owner"])
            info = self.job(job)
        self.at_least(info["finalAt"] + 1)

    def play_round(
        self,
        job: int,
        results: dict[str, tuple[int, int]],
        revealers: Iterable[str] | None = None,
        committers: Iterable[str] | None = None,
        chunk: bool = True,
    ) -> Any:
        """Commit (committers), reveal (revealers), wait for the reveal end and the previous
        round's finality, post ``results`` ({trainer: (score, reason)}, every participant) in
        join order, then (``chunk``) reveal the round's validation chunk."""
        info = self.job(job)
        rnd = info["currentRound"]
        parts = self.parts(job)
        committers = list(parts if committers is None else committers)
        revealers = list(committers if revealers is None else revealers)
        updates = {t: self.commit(job, t, rnd) for t in committers}
        self.at_least(self.job(job)["commitEnd"])
        for t in revealers:
            self.reveal(job, t, updates[t])
        self.at_least(self.job(job)["revealEnd"])
        self.make_final(job)
        scores = [results[t][0] for t in parts]
        reasons = [results[t][1] for t in parts]
        receipt = self.post(job, rnd, scores, reasons)
        if chunk:
            self.reveal_chunk(job, rnd)
        return receipt

    def finish(self, job: int, sender: str | None = None) -> Any:
        """Make the last round final and finalize the job."""
        self.make_final(job)
        return self.tx(self.market.functions.finalize(job), sender or self.accounts[0])

    # -- disputes ----------------------------------------------------------------------------------
    def dispute(self, dispute_id: int) -> dict[str, Any]:
        comps = next(i for i in self.court.abi if i.get("name") == "getDispute")["outputs"][0][
            "components"
        ]
        value = self.court.functions.getDispute(dispute_id).call()
        return dict(zip([c["name"] for c in comps], value, strict=True))

    def challenge(self, job: int, rnd: int, digest: bytes, challenger: str) -> tuple[int, Any]:
        did = int(self.court.functions.nextDisputeId().call())
        receipt = self.tx(self.court.functions.challenge(job, rnd, digest), challenger)
        return did, receipt

    def vote(self, dispute_id: int, votes: dict[str, bytes | None]) -> None:
        """Each member in ``votes`` commits and then reveals its digest (None: stays absent)."""
        salts = {}
        for member, digest in votes.items():
            if digest is None:
                continue
            salts[member] = keccak(text=f"{member}:{dispute_id}")
            c = vote_commitment(digest, salts[member], member, dispute_id)
            self.tx(self.court.functions.commitVote(dispute_id, c), member)
        d = self.dispute(dispute_id)
        if d["commits"] < 3:
            self.at_least(d["commitEnd"])
        for member, salt in salts.items():
            digest = votes[member]
            self.tx(self.court.functions.revealVote(dispute_id, digest, salt), member)

    def resolve(self, dispute_id: int, sender: str | None = None) -> Any:
        d = self.dispute(dispute_id)
        if d["reveals"] < 3:
            self.at_least(d["revealEnd"])
        return self.tx(self.court.functions.resolve(dispute_id), sender or self.accounts[0])


def check_conservation(chain: Chain, extra: Iterable[str] = ()) -> dict[int, dict[str, int]]:
    """ETH conservation, to the wei, read off the chain's state and event logs:

    market balance == Σ vault balances (``chain.accounts`` and ``extra``)
                    + Σ over jobs (reward + slashedPool + bond forfeited into the job − paid)

    and, per settled/abandoned job: Σ unclaimed rewardOf + unclaimed refund + paid + burned +
    forfeit-pool dust == reward + slashedPool + forfeited bond (cancelled: refund + paid ==
    reward). Returns each job's figures."""
    m = chain.market

    def logs(name: str) -> list[Any]:
        return list(m.events[name]().get_logs(from_block=0))

    paid: dict[int, int] = {}
    for e in logs("RewardClaimed"):
        paid[e["args"]["jobId"]] = paid.get(e["args"]["jobId"], 0) + e["args"]["reward"]
    for e in logs("RefundClaimed"):
        paid[e["args"]["jobId"]] = paid.get(e["args"]["jobId"], 0) + e["args"]["amount"]
    burned: dict[int, int] = {}
    for e in logs("SlashedStakeBurned"):
        burned[e["args"]["jobId"]] = burned.get(e["args"]["jobId"], 0) + e["args"]["amount"]
    corrected = {e["transactionHash"] for e in logs("RoundCorrected")}
    forfeited: dict[int, int] = {}  # abandon moves the bond into the job; a correction pays it out
    for e in logs("AggregatorBondSlashed"):
        if e["transactionHash"] not in corrected:
            job = e["args"]["jobId"]
            forfeited[job] = forfeited.get(job, 0) + e["args"]["amount"]
    vault = sum(chain.account(a)[0] for a in {*chain.accounts, *extra})
    out: dict[int, dict[str, int]] = {}
    for job in range(1, int(m.functions.nextJobId().call())):
        info = chain.job(job)
        f = {
            "reward": info["reward"],
            "slashed": info["slashedPool"],
            "forfeited": forfeited.get(job, 0),
            "paid": paid.get(job, 0),
            "burned": burned.get(job, 0),
        }
        f["held"] = f["reward"] + f["slashed"] + f["forfeited"] - f["paid"]
        out[job] = f
        refund = 0 if info["refundClaimed"] else info["ownerRefund"]
        if info["status"] in (SETTLED, ABANDONED):
            unclaimed = sum(
                m.functions.rewardOf(job, t).call() for t in m.functions.participantsOf(job).call()
            )
            pool = info["forfeitPool"]
            dust = pool - pool // info["reveals"] * info["reveals"] if pool else 0
            assert unclaimed + refund + f["paid"] + f["burned"] + dust == (
                f["reward"] + f["slashed"] + f["forfeited"]
            ), (job, f, unclaimed, refund, dust)
            assert info["ownerRefund"] <= f["reward"]  # slashed stake never refunds the owner
        elif info["status"] == CANCELLED:
            assert refund + f["paid"] == f["reward"]
    held = chain.balance(m.address)
    assert held == vault + sum(f["held"] for f in out.values()), (held, vault, out)
    return out


def _has_event(contract: Contract, name: str) -> bool:
    return any(i.get("type") == "event" and i.get("name") == name for i in contract.abi)


def all_error_names() -> set[str]:
    return {name for name, _ in ERRORS.values()} - {"Panic", "Error"}


def expect_error(chain: Chain, name: str) -> Callable[..., tuple[Any, ...]]:
    def run(fn: Any, sender: str, value: int = 0) -> tuple[Any, ...]:
        return chain.reverts(name, fn, sender, value)

    return run
