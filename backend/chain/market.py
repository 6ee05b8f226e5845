"""A typed client for the FedMarket contract: transactions, views and decoded events.

Every role talks to the chain through this class; nothing else knows the ABI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from backend.chain.base import Chain, TxResult
from backend.core.jobstatus import JobStatus, Phase

CONTRACT_NAME = "FedMarket"
DEFAULT_ALPHA_PPM = 300_000  # reliability EMA weight of the newest job


@dataclass(frozen=True)
class JobParams:
    """Arguments of createJob (see contracts/SPEC.md)."""

    aggregator: str
    stake_required: int
    rounds: int
    min_trainers: int
    max_trainers: int
    spec_hash: bytes
    spec_cid: str
    initial_model_hash: bytes
    initial_model_cid: str
    validation_commitment: bytes
    join_duration: int = 7 * 24 * 3600
    commit_duration: int = 24 * 3600
    reveal_duration: int = 12 * 3600
    post_duration: int = 24 * 3600
    min_reliability_ppm: int = 0
    slash_bps: int = 5_000

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            Web3.to_checksum_address(self.aggregator),
            self.stake_required,
            self.rounds,
            self.min_trainers,
            self.max_trainers,
            self.join_duration,
            self.commit_duration,
            self.reveal_duration,
            self.post_duration,
            self.min_reliability_ppm,
            self.slash_bps,
            self.spec_hash,
            self.spec_cid,
            self.initial_model_hash,
            self.initial_model_cid,
            self.validation_commitment,
        )


@dataclass(frozen=True)
class Reveal:
    trainer: str
    content_hash: bytes
    cid: str
    block_number: int
    log_index: int


@dataclass(frozen=True)
class RoundEntry:
    """One participant's part in a round: its reveal (None if none) and commit position."""

    trainer: str
    reveal: Reveal | None
    commit_order: int  # position among this round's commits; non-committers come last


@dataclass(frozen=True)
class RoundPost:
    round: int
    model_hash: bytes
    model_cid: str
    scores: list[int]
    reasons: list[int]
    block_number: int
    tx_hash: str


@dataclass
class JobInfo:
    """getJob() with field names, plus what JobCreated recorded."""

    job_id: int
    fields: dict[str, Any]
    created: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def status_enum(self) -> JobStatus:
        return JobStatus(int(self.fields["status"]))


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, str) and isinstance(wanted, str):
        return value.lower() == wanted.lower()
    return bool(value == wanted)


def commitment_hash(
    content_hash: bytes, cid: str, salt: bytes, trainer: str, job_id: int, round_: int
) -> bytes:
    """keccak256(abi.encode(contentHash, cid, salt, trainer, jobId, round)) — as the contract."""
    encoded = abi_encode(
        ["bytes32", "string", "bytes32", "address", "uint256", "uint32"],
        [content_hash, cid, salt, Web3.to_checksum_address(trainer), job_id, round_],
    )
    return Web3.keccak(encoded)


def validation_commitment(content_hash: bytes, cid: str) -> bytes:
    return Web3.keccak(abi_encode(["bytes32", "string"], [content_hash, cid]))


def _named(outputs: list[dict[str, Any]], value: Any) -> Any:
    """Turn web3's tuples into dicts using the ABI's component names (recursively)."""
    if len(outputs) == 1 and outputs[0]["type"] == "tuple":
        return _struct(outputs[0]["components"], value)
    return value


def _struct(components: list[dict[str, Any]], value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    out: dict[str, Any] = {}
    for comp, v in zip(components, value, strict=True):
        out[comp["name"]] = _struct(comp["components"], v) if comp["type"] == "tuple" else v
    return out


class MarketClient:
    """The FedMarket contract on one chain."""

    def __init__(self, chain: Chain, contract: Contract) -> None:
        self.chain = chain
        self.contract = contract
        self._created: dict[int, dict[str, Any]] = {}  # JobCreated is immutable: read once
        self._abi_outputs = {
            i["name"]: i.get("outputs", []) for i in contract.abi if i.get("type") == "function"
        }

    @property
    def address(self) -> str:
        return str(self.contract.address)

    @classmethod
    def deploy(
        cls, chain: Chain, deployer: LocalAccount, alpha_ppm: int = DEFAULT_ALPHA_PPM
    ) -> tuple[MarketClient, TxResult]:
        contract, result = chain.deploy(CONTRACT_NAME, deployer, alpha_ppm)
        return cls(chain, contract), result

    @classmethod
    def at(cls, chain: Chain, address: str) -> MarketClient:
        return cls(chain, chain.contract(CONTRACT_NAME, address))

    def _tx(self, sender: LocalAccount, name: str, *args: Any, value: int = 0) -> TxResult:
        return self.chain.transact(getattr(self.contract.functions, name)(*args), sender, value)

    def _view(self, name: str, *args: Any) -> Any:
        value = self.chain.call(getattr(self.contract.functions, name)(*args))
        return _named(self._abi_outputs.get(name, []), value)

    # -- vault ----------------------------------------------------------------------------
    def register(self, trainer: LocalAccount, stake: int) -> TxResult:
        return self._tx(trainer, "register", value=stake)

    def deposit(self, trainer: LocalAccount, amount: int) -> TxResult:
        return self._tx(trainer, "deposit", value=amount)

    def withdraw(self, trainer: LocalAccount, amount: int) -> TxResult:
        return self._tx(trainer, "withdraw", amount)

    def account_of(self, address: str) -> dict[str, Any]:
        balance, locked, registered = self._view("accountOf", Web3.to_checksum_address(address))
        return {"balance": int(balance), "locked": int(locked), "registered": bool(registered)}

    def reliability_of(self, address: str) -> tuple[int, int]:
        ppm, jobs = self._view("reliabilityOf", Web3.to_checksum_address(address))
        return int(ppm), int(jobs)

    # -- jobs -----------------------------------------------------------------------------
    def create_job(
        self, owner: LocalAccount, params: JobParams, reward: int
    ) -> tuple[int, TxResult]:
        result = self._tx(owner, "createJob", params.as_tuple(), value=reward)
        (event,) = self.contract.events.JobCreated().process_receipt(result.receipt)
        return int(event["args"]["jobId"]), result

    def check_create_job(self, owner: LocalAccount, params: JobParams, reward: int) -> None:
        """Raise what `create_job` would (a revert, too little ETH) without sending it."""
        self.chain.preflight(self.contract.functions.createJob(params.as_tuple()), owner, reward)

    def join(self, trainer: LocalAccount, job_id: int) -> TxResult:
        return self._tx(trainer, "join", job_id)

    def start(self, owner: LocalAccount, job_id: int) -> TxResult:
        return self._tx(owner, "start", job_id)

    def cancel(self, sender: LocalAccount, job_id: int) -> TxResult:
        return self._tx(sender, "cancel", job_id)

    def commit(self, trainer: LocalAccount, job_id: int, commitment: bytes) -> TxResult:
        return self._tx(trainer, "commit", job_id, commitment)

    def reveal(
        self, trainer: LocalAccount, job_id: int, content_hash: bytes, cid: str, salt: bytes
    ) -> TxResult:
        return self._tx(trainer, "reveal", job_id, content_hash, cid, salt)

    def post_round(
        self,
        aggregator: LocalAccount,
        job_id: int,
        round_: int,
        model_hash: bytes,
        model_cid: str,
        scores: list[int],
        reasons: list[int],
    ) -> TxResult:
        return self._tx(
            aggregator,
            "postRound",
            job_id,
            round_,
            model_hash,
            model_cid,
            [int(s) for s in scores],
            [int(r) for r in reasons],
        )

    def abandon(self, sender: LocalAccount, job_id: int) -> TxResult:
        return self._tx(sender, "abandon", job_id)

    def finalize(self, sender: LocalAccount, job_id: int) -> TxResult:
        return self._tx(sender, "finalize", job_id)

    def claim(self, trainer: LocalAccount, job_id: int) -> TxResult:
        return self._tx(trainer, "claim", job_id)

    def claim_refund(self, owner: LocalAccount, job_id: int) -> TxResult:
        return self._tx(owner, "claimRefund", job_id)

    def reveal_validation(
        self, owner: LocalAccount, job_id: int, content_hash: bytes, cid: str
    ) -> TxResult:
        return self._tx(owner, "revealValidation", job_id, content_hash, cid)

    # -- views ----------------------------------------------------------------------------
    def next_job_id(self) -> int:
        return int(self._view("nextJobId"))

    def job(self, job_id: int) -> JobInfo:
        return JobInfo(job_id, self._view("getJob", job_id))

    def participants(self, job_id: int) -> list[str]:
        return [Web3.to_checksum_address(a) for a in self._view("participantsOf", job_id)]

    def participant(self, job_id: int, trainer: str) -> dict[str, Any]:
        return self._view("participantOf", job_id, Web3.to_checksum_address(trainer))

    def reward_of(self, job_id: int, trainer: str) -> int:
        return int(self._view("rewardOf", job_id, Web3.to_checksum_address(trainer)))

    def phase_of(self, job_id: int) -> Phase:
        return Phase(int(self._view("phaseOf", job_id)))

    # -- events ---------------------------------------------------------------------------
    def _logs(self, event: str, from_block: int = 0, **filters: Any) -> list[Any]:
        ev = getattr(self.contract.events, event)()
        raw = self.chain.logs(self.address, from_block)
        if raw is None:
            return list(ev.get_logs(from_block=from_block, argument_filters=filters or None))
        topic = ev.topic if hasattr(ev, "topic") else None
        out = []
        for log in raw:
            if topic is not None and HexBytes(log["topics"][0]) != HexBytes(topic):
                continue
            try:
                decoded = ev.process_log(log)
            except Exception:  # another event's log
                continue
            args = decoded["args"]
            if all(_same(args.get(k), v) for k, v in filters.items()):
                out.append(decoded)
        return out

    def jobs_aggregated_by(self, aggregator: str, from_block: int, to_block: int) -> list[int]:
        """Ids of the jobs created in blocks `from_block`..`to_block` (inclusive) naming
        `aggregator`, filtered by topic on the node (JobCreated)."""
        logs = self.contract.events.JobCreated().get_logs(
            from_block=from_block,
            to_block=to_block,
            argument_filters={"aggregator": Web3.to_checksum_address(aggregator)},
        )
        return [int(entry["args"]["jobId"]) for entry in logs]

    def job_created(self, job_id: int) -> dict[str, Any]:
        if job_id in self._created:
            return self._created[job_id]
        logs = self._logs("JobCreated", jobId=job_id)
        if not logs:
            return {}
        args = dict(logs[0]["args"])
        params = args.get("params")
        if params is not None and not isinstance(params, Mapping):
            comps = next(i for i in self.contract.abi if i.get("name") == "JobCreated")
            pcomp = next(c for c in comps["inputs"] if c["name"] == "params")["components"]
            args["params"] = _struct(pcomp, params)
        args["blockNumber"] = logs[0]["blockNumber"]
        self._created[job_id] = args
        return args

    def _since(self, job_id: int) -> int:
        """A job's events cannot predate its creation: start log scans there."""
        return int(self.job_created(job_id).get("blockNumber", 0))

    def reveals(self, job_id: int, round_: int) -> list[Reveal]:
        out = []
        for log in self._logs("UpdateRevealed", self._since(job_id), jobId=job_id, round=round_):
            a = log["args"]
            out.append(
                Reveal(
                    Web3.to_checksum_address(a["trainer"]),
                    bytes(a["contentHash"]),
                    str(a["cid"]),
                    int(log["blockNumber"]),
                    int(log["logIndex"]),
                )
            )
        return out

    def commits(self, job_id: int, round_: int) -> list[tuple[str, int, int]]:
        """(trainer, block, log index) of each commit this round, in chain order."""
        return [
            (
                Web3.to_checksum_address(log["args"]["trainer"]),
                int(log["blockNumber"]),
                int(log["logIndex"]),
            )
            for log in self._logs(
                "UpdateCommitted", self._since(job_id), jobId=job_id, round=round_
            )
        ]

    def round_entries(self, job_id: int, round_: int) -> list[RoundEntry]:
        """Every participant in join order, with its reveal and commit position this round."""
        reveals = {r.trainer: r for r in self.reveals(job_id, round_)}
        order = {t: k for k, (t, _, _) in enumerate(self.commits(job_id, round_))}
        return [
            RoundEntry(t, reveals.get(t), order.get(t, len(order)))
            for t in self.participants(job_id)
        ]

    def round_posts(self, job_id: int) -> list[RoundPost]:
        out = []
        for log in self._logs("RoundPosted", self._since(job_id), jobId=job_id):
            a = log["args"]
            out.append(
                RoundPost(
                    int(a["round"]),
                    bytes(a["modelHash"]),
                    str(a["modelCid"]),
                    [int(s) for s in a["scores"]],
                    [int(r) for r in a["reasons"]],
                    int(log["blockNumber"]),
                    log["transactionHash"].hex(),
                )
            )
        return sorted(out, key=lambda p: p.round)

    def slashes(self, job_id: int) -> list[dict[str, Any]]:
        return [
            dict(log["args"])
            for log in self._logs("TrainerSlashed", self._since(job_id), jobId=job_id)
        ]

    def claims(self, job_id: int) -> list[dict[str, Any]]:
        return [
            dict(log["args"])
            for log in self._logs("RewardClaimed", self._since(job_id), jobId=job_id)
        ]

    def validation_reveal(self, job_id: int) -> tuple[bytes, str] | None:
        """(sha256, cid) of the validation split the owner revealed, or None before the reveal."""
        logs = self._logs("ValidationRevealed", self._since(job_id), jobId=job_id)
        if not logs:
            return None
        a = logs[0]["args"]
        return bytes(a["contentHash"]), str(a["cid"])

    def current_model(self, job_id: int) -> tuple[bytes, str]:
        """(sha256, cid) of the job's current global model."""
        posts = self.round_posts(job_id)
        if posts:
            return posts[-1].model_hash, posts[-1].model_cid
        created = self.job_created(job_id)
        params = created["params"]
        return bytes(params["initialModelHash"]), str(params["initialModelCid"])

    def spec_pointer(self, job_id: int) -> tuple[bytes, str]:
        params = self.job_created(job_id)["params"]
        return bytes(params["specHash"]), str(params["specCid"])
