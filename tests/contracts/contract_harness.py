"""In-process EVM harness for the FedMarket contract tests (web3 + eth-tester/py-evm).

Contracts are deployed from the committed artifacts (``backend.devtools.compile.load_artifact``), so
these tests need neither node nor solc. Reverts are asserted by custom-error *name*: the revert
data's selector is matched against every error in the artifacts' ABIs.
"""

from __future__ import annotations

import ast
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak, to_checksum_address
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from backend.chain.contracts import load_artifact

ETH = 10**18
ALPHA_PPM = 300_000
ARTIFACTS = ("FedMarket", "FedMarketSeparatePost", "ReentrantClaimer")
# Genesis balance well above 2**96 wei so the AmountTooLarge paths are reachable.
GENESIS_BALANCE = 10**30
GENESIS_TIME = 4_000_000_000  # year 2096

# Status / reason codes (SPEC.md).
NONE, CREATED, RUNNING, FINISHED, SETTLED, ABANDONED, CANCELLED = range(7)
ACCEPTED, MISSING, UNAVAILABLE, MISMATCH = 0, 1, 2, 3
OUTLIER = 8


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


def commitment(
    content_hash: bytes, cid: str, salt: bytes, trainer: str, job: int, rnd: int
) -> bytes:
    return keccak(
        abi_encode(
            ["bytes32", "string", "bytes32", "address", "uint256", "uint32"],
            [content_hash, cid, salt, trainer, job, rnd],
        )
    )


def validation_commitment(content_hash: bytes, cid: str) -> bytes:
    return keccak(abi_encode(["bytes32", "string"], [content_hash, cid]))


@dataclass
class Update:
    content_hash: bytes
    cid: str
    salt: bytes


def make_update(trainer: str, job: int, rnd: int) -> Update:
    blob = f"{trainer}:{job}:{rnd}".encode()
    return Update(
        hashlib.sha256(blob).digest(), f"bafy-{job}-{rnd}-{trainer[2:10]}", os.urandom(32)
    )


def job_params(aggregator: str, **kw: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "aggregator": aggregator,
        "stakeRequired": ETH,
        "rounds": 2,
        "minTrainers": 2,
        "maxTrainers": 3,
        "joinDuration": 1000,
        "commitDuration": 100,
        "revealDuration": 100,
        "postDuration": 100,
        "minReliabilityPpm": 0,
        "slashBps": 1000,
        "specHash": b"\x11" * 32,
        "specCid": "bafy-spec",
        "initialModelHash": b"\x22" * 32,
        "initialModelCid": "bafy-model-0",
        "validationCommitment": validation_commitment(b"\x33" * 32, "bafy-val"),
    }
    p.update(kw)
    return p


def params_tuple(p: dict[str, Any]) -> tuple[Any, ...]:
    keys = [
        "aggregator",
        "stakeRequired",
        "rounds",
        "minTrainers",
        "maxTrainers",
        "joinDuration",
        "commitDuration",
        "revealDuration",
        "postDuration",
        "minReliabilityPpm",
        "slashBps",
        "specHash",
        "specCid",
        "initialModelHash",
        "initialModelCid",
        "validationCommitment",
    ]
    return tuple(p[k] for k in keys)


@dataclass
class Chain:
    """One fresh in-process chain with a deployed market."""

    num_accounts: int = 12
    alpha: int = ALPHA_PPM
    contract: str = "FedMarket"
    tester: EthereumTester = field(init=False)
    w3: Web3 = field(init=False)
    accounts: list[str] = field(init=False)
    market: Contract = field(init=False)

    def __post_init__(self) -> None:
        state = PyEVMBackend.generate_genesis_state(
            overrides={"balance": GENESIS_BALANCE}, num_accounts=self.num_accounts
        )
        # Genesis far in the future: block timestamps are then parent + 1 (py-evm takes
        # max(wall clock, parent + 1)), so every run sees the same timestamps.
        params = PyEVMBackend.generate_genesis_params(overrides={"timestamp": GENESIS_TIME})
        self.tester = EthereumTester(PyEVMBackend(genesis_parameters=params, genesis_state=state))
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.accounts = list(self.w3.eth.accounts)
        self.market = self.deploy(self.contract, self.alpha)

    # -- contracts ---------------------------------------------------------------------------
    def deploy(self, name: str, *args: Any, sender: str | None = None) -> Contract:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        h = factory.constructor(*args).transact({"from": sender or self.accounts[0]})
        receipt = self.w3.eth.wait_for_transaction_receipt(h)
        assert receipt["status"] == 1
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])

    def tx(self, fn: Any, sender: str, value: int = 0, gas: int | None = None) -> Any:
        params: dict[str, Any] = {"from": sender, "value": value}
        if gas is not None:
            params["gas"] = gas
        h = fn.transact(params)
        receipt = self.w3.eth.get_transaction_receipt(h)
        assert receipt["status"] == 1, "transaction reverted"
        return receipt

    def reverts(self, name: str, fn: Any, sender: str, value: int = 0) -> tuple[Any, ...]:
        """Assert that sending ``fn`` reverts with custom error ``name``; return its args."""
        try:
            fn.transact({"from": sender, "value": value})
        except TransactionFailed as exc:
            got, args = decode_error(revert_data(exc))
            assert got == name, f"expected {name}, reverted with {got}{args}"
            SEEN_ERRORS.add(name)
            return args
        raise AssertionError(f"expected revert {name}, transaction succeeded")

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

    # -- vault -----------------------------------------------------------------------------------
    def balance(self, addr: str) -> int:
        return int(self.w3.eth.get_balance(addr))

    def account(self, addr: str) -> tuple[int, int, bool]:
        return tuple(self.market.functions.accountOf(addr).call())  # type: ignore[return-value]

    def register(self, addr: str, stake: int = 5 * ETH) -> None:
        self.tx(self.market.functions.register(), addr, stake)

    # -- jobs --------------------------------------------------------------------------------------
    def create_job(self, owner: str, reward: int, **kw: Any) -> int:
        p = job_params(kw.pop("aggregator", self.accounts[1]), **kw)
        job = int(self.market.functions.nextJobId().call())
        self.tx(self.market.functions.createJob(params_tuple(p)), owner, reward)
        return job

    def job(self, job: int) -> dict[str, Any]:
        names = [
            o["name"]
            for o in next(i for i in self.market.abi if i.get("name") == "getJob")["outputs"][0][
                "components"
            ]
        ]
        return dict(zip(names, self.market.functions.getJob(job).call(), strict=True))

    def participant(self, job: int, addr: str) -> dict[str, Any]:
        names = [
            "lockedStake",
            "totalScore",
            "lastCommitRound",
            "lastRevealRound",
            "flaggedRounds",
            "claimed",
            "joined",
        ]
        return dict(zip(names, self.market.functions.participantOf(job, addr).call(), strict=True))

    def commit(self, job: int, trainer: str, rnd: int) -> Update:
        u = make_update(trainer, job, rnd)
        c = commitment(u.content_hash, u.cid, u.salt, trainer, job, rnd)
        self.tx(self.market.functions.commit(job, c), trainer)
        return u

    def reveal(self, job: int, trainer: str, u: Update) -> Any:
        return self.tx(self.market.functions.reveal(job, u.content_hash, u.cid, u.salt), trainer)

    def post(
        self, job: int, rnd: int, scores: list[int], reasons: list[int], sender: str | None = None
    ) -> Any:
        fn = self.market.functions.postRound(
            job, rnd, bytes([rnd]) * 32, f"bafy-model-{rnd}", scores, reasons
        )
        return self.tx(fn, sender or self.job(job)["aggregator"])

    def play_round(
        self,
        job: int,
        results: dict[str, tuple[int, int]],
        revealers: Iterable[str] | None = None,
        committers: Iterable[str] | None = None,
    ) -> Any:
        """Commit (committers), reveal (revealers), wait for the reveal end, post ``results``
        ({trainer: (score, reason)}, every participant) in join order."""
        info = self.job(job)
        rnd = info["currentRound"]
        parts = list(self.market.functions.participantsOf(job).call())
        committers = list(parts if committers is None else committers)
        revealers = list(committers if revealers is None else revealers)
        updates = {t: self.commit(job, t, rnd) for t in committers}
        info = self.job(job)
        if self.next_timestamp() < info["commitEnd"]:
            self.at(info["commitEnd"])
        for t in revealers:
            self.reveal(job, t, updates[t])
        info = self.job(job)
        if self.next_timestamp() < info["revealEnd"]:
            self.at(info["revealEnd"])
        scores = [results[t][0] for t in parts]
        reasons = [results[t][1] for t in parts]
        return self.post(job, rnd, scores, reasons)


def all_error_names() -> set[str]:
    return {name for name, _ in ERRORS.values()} - {"Panic", "Error"}


def expect_error(chain: Chain, name: str) -> Callable[..., tuple[Any, ...]]:
    def run(fn: Any, sender: str, value: int = 0) -> tuple[Any, ...]:
        return chain.reverts(name, fn, sender, value)

    return run
