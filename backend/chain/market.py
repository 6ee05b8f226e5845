"""A typed client for the FedMarket contract, its DisputeCourt and its ReliabilityRegistry:
transactions, views and decoded events.

Every role talks to the chain through this class; nothing else knows the ABI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from backend.chain.base import Chain, TxResult
from backend.chain.events import EventCache
from backend.core.jobstatus import JobStatus, Phase

CONTRACT_NAME = "FedMarket"
COURT_NAME = "DisputeCourt"
REGISTRY_NAME = "ReliabilityRegistry"  # deployed by the market's constructor
DEFAULT_ALPHA_PPM = 300_000  # reliability: decay of the past's weight per newer job
# Per deployment. Dev chains allow any window (0 = no challenges); a production deployment sets
# hours (`fedmarket deploy --min-challenge-window`), so no job can shorten what trainers rely on.
DEFAULT_MIN_CHALLENGE_WINDOW = 0
DEFAULT_CHALLENGE_BOND = 10**17  # 0.1 ETH locked by a challenger
DEFAULT_VOTE_BOND = 10**17  # 0.1 ETH locked by each drawn committee member
ROLE_AGGREGATOR = 1
MAX_SETTLE_STEPS = 512  # FedMarket.MAX_SETTLE_STEPS: most settlement steps per `settle` call
ROLE_VERIFIER = 2
MAX_ANNOUNCED_CID = 128  # bytes: a CIDv1 in base32 is 59


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
    validation_root: bytes
    join_duration: int = 7 * 24 * 3600
    commit_duration: int = 24 * 3600
    reveal_duration: int = 12 * 3600
    post_duration: int = 24 * 3600
    challenge_window: int = 6 * 3600
    min_reliability_ppm: int = 0
    min_reliability_weight: int = 0  # wei of stake-weighted history a trainer needs to join
    slash_bps: int = 5_000
    aggregator_bond: int = 0  # 0: the contract's default, equal to the reward

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            Web3.to_checksum_address(self.aggregator),
            self.stake_required,
            self.aggregator_bond,
            self.rounds,
            self.min_trainers,
            self.max_trainers,
            self.join_duration,
            self.commit_duration,
            self.reveal_duration,
            self.post_duration,
            self.challenge_window,
            self.min_reliability_ppm,
            self.min_reliability_weight,
            self.slash_bps,
            self.spec_hash,
            self.spec_cid,
            self.initial_model_hash,
            self.initial_model_cid,
            self.validation_root,
        )


class Reliability(NamedTuple):
    """A trainer's record in the ReliabilityRegistry."""

    ppm: int  # stake-weighted, decayed mean of its per-job contributions (1e6 = 1.0)
    jobs: int  # jobs folded in
    weight: int  # decayed stake (wei) the mean rests on: its confidence weight


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


@dataclass(frozen=True)
class Settlement:
    """FedMarket.settlementOf: `done` of `total` settlement steps (both 0 before a job ends, or
    for a cancelled job); `undo`: it begins by applying a correction or a forfeit."""

    done: int
    total: int
    undo: bool

    @property
    def pending(self) -> bool:
        return self.done < self.total


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


def commitment_hash(
    content_hash: bytes, cid: str, salt: bytes, trainer: str, job_id: int, round_: int
) -> bytes:
    """keccak256(abi.encode(contentHash, cid, salt, trainer, jobId, round)) — as the contract."""
    encoded = abi_encode(
        ["bytes32", "string", "bytes32", "address", "uint256", "uint32"],
        [content_hash, cid, salt, Web3.to_checksum_address(trainer), job_id, round_],
    )
    return Web3.keccak(encoded)


def round_digest(
    job_id: int, round_: int, model_hash: bytes, scores: list[int], reasons: list[int]
) -> bytes:
    """keccak256(abi.encode(jobId, round, modelHash, scores, reasons)) — FedMarket.digestOf:
    what a challenge and a committee vote are about."""
    encoded = abi_encode(
        ["uint256", "uint32", "bytes32", "uint64[]", "uint8[]"],
        [job_id, round_, model_hash, [int(s) for s in scores], [int(r) for r in reasons]],
    )
    return Web3.keccak(encoded)


def vote_commitment(digest: bytes, salt: bytes, member: str, dispute_id: int) -> bytes:
    """keccak256(abi.encode(digest, salt, member, disputeId)) — DisputeCourt.commitVote."""
    encoded = abi_encode(
        ["bytes32", "bytes32", "address", "uint256"],
        [digest, salt, Web3.to_checksum_address(member), dispute_id],
    )
    return Web3.keccak(encoded)


def _round_post(log: Any) -> RoundPost:
    """A RoundPosted or RoundCorrected log (same fields) as a RoundPost."""
    a = log["args"]
    return RoundPost(
        int(a["round"]),
        bytes(a["modelHash"]),
        str(a["modelCid"]),
        [int(s) for s in a["scores"]],
        [int(r) for r in a["reasons"]],
        int(log["blockNumber"]),
        log["transactionHash"].hex(),
    )


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


def snapshot_grace(chain: Chain, job: JobInfo) -> int:
    """Seconds after the commit phase closes during which honest trainers do not reveal, so the
    aggregator's snapshot of the sealed updates (`aggregator.round.gather.SealedSnapshot`) sees
    only sealed updates: `min(chain.reveal_grace_s, revealDuration / 10)`. 0 on the embedded
    chain, whose clock moves only by time travel: there the first reveal ends the snapshot."""
    return min(chain.reveal_grace_s, int(job.revealDuration) // 10)


class MarketClient:
    """The FedMarket contract on one chain (with its court and reliability registry)."""

    def __init__(self, chain: Chain, contract: Contract, court: Contract | None = None) -> None:
        self.chain = chain
        self.contract = contract
        if court is None:
            court = chain.contract(COURT_NAME, str(chain.call(contract.functions.court())))
        self.court = court
        self.registry = chain.contract(
            REGISTRY_NAME, str(chain.call(contract.functions.reliability()))
        )
        self._created: dict[int, dict[str, Any]] = {}  # JobCreated is immutable: read once
        self.events = EventCache(chain)
        self._abi_outputs = {
            i["name"]: i.get("outputs", []) for i in contract.abi if i.get("type") == "function"
        }

    @property
    def address(self) -> str:
        return str(self.contract.address)

    @classmethod
    def deploy(
        cls,
        chain: Chain,
        deployer: LocalAccount,
        alpha_ppm: int = DEFAULT_ALPHA_PPM,
        *,
        min_challenge_window: int = DEFAULT_MIN_CHALLENGE_WINDOW,
        challenge_bond: int = DEFAULT_CHALLENGE_BOND,
        vote_bond: int = DEFAULT_VOTE_BOND,
    ) -> tuple[MarketClient, TxResult]:
        """Deploy FedMarket (which deploys its ReliabilityRegistry) and its DisputeCourt and
        bind them; the market's deploy result."""
        contract, result = chain.deploy(CONTRACT_NAME, deployer, alpha_ppm, min_challenge_window)
        court, _ = chain.deploy(COURT_NAME, deployer, contract.address, challenge_bond, vote_bond)
        chain.transact(contract.functions.bindCourt(court.address), deployer)
        return cls(chain, contract, court), result

    @classmethod
    def at(cls, chain: Chain, address: str) -> MarketClient:
        return cls(chain, chain.contract(CONTRACT_NAME, address))

    def _tx(self, sender: LocalAccount, name: str, *args: Any, value: int = 0) -> TxResult:
        return self.chain.transact(getattr(self.contract.functions, name)(*args), sender, value)

    def _view(self, name: str, *args: Any) -> Any:
        value = self.chain.call(getattr(self.contract.functions, name)(*args))
        return _named(self._abi_outputs.get(name, []), value)

    def _court_tx(self, sender: LocalAccount, name: str, *args: Any) -> TxResult:
        return self.chain.transact(getattr(self.court.functions, name)(*args), sender)

    def _court_view(self, name: str, *args: Any) -> Any:
        return self.chain.call(getattr(self.court.functions, name)(*args))

    # -- vault ----------------------------------------------------------------------------
    def register(self, trainer: LocalAccount, stake: int) -> TxResult:
        return self._tx(trainer, "register", value=stake)

    def deposit(self, trainer: LocalAccount, amount: int) -> TxResult:
        return self._tx(trainer, "deposit", value=amount)

    def withdraw(self, trainer: LocalAccount, amount: int) -> TxResult:
        return self._tx(trainer, "withdraw", amount)

    def register_role(self, account: LocalAccount, role: int, bond: int) -> TxResult:
        """Take ROLE_AGGREGATOR or ROLE_VERIFIER, adding `bond` wei to the account's stake."""
        return self._tx(account, "registerRole", role, value=bond)

    def roles_of(self, address: str) -> int:
        return int(self._view("rolesOf", Web3.to_checksum_address(address)))

    def cooldown_of(self, address: str) -> int:
        return int(self._view("cooldownOf", Web3.to_checksum_address(address)))

    def register_verifier(self, account: LocalAccount, bond: int) -> TxResult:
        """Take ROLE_VERIFIER (adding `bond` wei) and join the court's committee pool, which
        locks the court's vote bond; already in the pool, only the bond is added."""
        result = self.register_role(account, ROLE_VERIFIER, bond)
        if self.in_pool(account.address):
            return result
        return self.join_pool(account)

    def join_pool(self, account: LocalAccount) -> TxResult:
        return self._court_tx(account, "joinPool")

    def leave_pool(self, account: LocalAccount) -> TxResult:
        return self._court_tx(account, "leavePool")

    def in_pool(self, address: str) -> bool:
        return bool(self._court_view("inPool", Web3.to_checksum_address(address)))

    def verifiers(self) -> list[str]:
        """The committee pool (committees are drawn from it)."""
        count = int(self._court_view("poolSize"))
        return [Web3.to_checksum_address(self._court_view("poolAt", i)) for i in range(count)]

    def account_of(self, address: str) -> dict[str, Any]:
        balance, locked, registered = self._view("accountOf", Web3.to_checksum_address(address))
        return {"balance": int(balance), "locked": int(locked), "registered": bool(registered)}

    def reliability_of(self, address: str) -> Reliability:
        """`address`'s reliability record (ReliabilityRegistry.reliabilityOf)."""
        fn = self.registry.functions.reliabilityOf(Web3.to_checksum_address(address))
        ppm, jobs, weight = self.chain.call(fn)
        return Reliability(int(ppm), int(jobs), int(weight))

    def reliability_alpha_ppm(self) -> int:
        """The registry's α: the newest job's stake against the decayed past (ppm)."""
        return int(self.chain.call(self.registry.functions.alphaPpm()))

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

    def commit(
        self, trainer: LocalAccount, job_id: int, commitment: bytes, announce: str = ""
    ) -> TxResult:
        """Commit; `announce` (the sealed update's CID) rides in the calldata after the
        arguments, for the aggregator's snapshot (`announced`)."""
        fn = self.contract.functions.commit(job_id, commitment)
        return self.chain.transact(fn, trainer, suffix=announce.encode("ascii"))

    def announced(self, job_id: int, round_: int) -> dict[str, str]:
        """trainer → the CID its commit transaction this round announced (none: left out).

        The announcement is untrusted bytes: anything but a short printable-ASCII string is
        ignored (the trainer then simply has no sealed update in the snapshot)."""
        out: dict[str, str] = {}
        logs = self._logs("UpdateCommitted", self._since(job_id), jobId=job_id, round=round_)
        tails = self.chain.call_suffixes([bytes(g["transactionHash"]) for g in logs], 64)
        for log, tail in zip(logs, tails, strict=True):
            if 0 < len(tail) <= MAX_ANNOUNCED_CID and tail.isascii() and tail.decode().isalnum():
                out[Web3.to_checksum_address(log["args"]["trainer"])] = tail.decode()
        return out

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

    def forfeit(self, sender: LocalAccount, job_id: int, posted: RoundPost) -> TxResult:
        """End a job whose owner withheld the pending round's chunk; `posted` is that round."""
        return self._tx(
            sender, "forfeit", job_id, (posted.model_hash, posted.scores, posted.reasons)
        )

    def min_challenge_window(self) -> int:
        return int(self._view("minChallengeWindow"))

    def abandon(self, sender: LocalAccount, job_id: int) -> TxResult:
        return self._tx(sender, "abandon", job_id)

    def finalize(self, sender: LocalAccount, job_id: int) -> TxResult:
        return self._tx(sender, "finalize", job_id)

    def claim(self, trainer: LocalAccount, job_id: int) -> TxResult:
        """Claim a reward, first finishing the job's settlement if a large job left some."""
        self.finish_settlement(trainer, job_id)
        return self._tx(trainer, "claim", job_id)

    def claim_refund(self, owner: LocalAccount, job_id: int) -> TxResult:
        self.finish_settlement(owner, job_id)
        return self._tx(owner, "claimRefund", job_id)

    def settlement_address(self) -> str:
        """The settlement module the market runs by delegatecall (FedMarketSettlement)."""
        return str(self._view("settlement"))

    def settlement(self, job_id: int) -> Settlement:
        done, total, undo = self._view("settlementOf", job_id)
        return Settlement(int(done), int(total), bool(undo))

    def settle(self, sender: LocalAccount, job_id: int, steps: int = MAX_SETTLE_STEPS) -> TxResult:
        """Run up to `steps` more steps of a large job's settlement (anyone may)."""
        round_, posted, fix = self._undo_args(job_id, self.settlement(job_id))
        return self._tx(sender, "settle", job_id, steps, round_, posted, fix)

    def finish_settlement(self, sender: LocalAccount, job_id: int) -> list[TxResult]:
        """Run `settle` until the job's settlement is complete (nothing to do for a job of up
        to 256 trainers, which settles when it ends); one result per transaction."""
        results = []
        while self.settlement(job_id).pending:
            results.append(self.settle(sender, job_id))
        return results

    def _undo_args(self, job_id: int, state: Settlement) -> tuple[int, tuple, tuple]:
        """(round, posted, fix) for `settle`: while a correction or forfeit is still being
        applied, that round's posted result and its correction (empty for a forfeit), read
        from the chain's events; otherwise nothing."""
        empty: tuple = (b"\0" * 32, [], [])
        if not state.undo or state.done >= state.total // 3:
            return 0, empty, empty
        job = self.job(job_id)
        if job.ownerForfeited:
            round_ = int(job.pendingRound) + 1
            fix = empty
        else:
            round_ = int(job.pendingRound)
            corrected = self.corrections(job_id)[round_]
            fix = (corrected.model_hash, corrected.scores, corrected.reasons)
        posted = next(p for p in self.round_posts(job_id) if p.round == round_)
        return round_, (posted.model_hash, posted.scores, posted.reasons), fix

    def reveal_validation_chunk(
        self,
        sender: LocalAccount,
        job_id: int,
        round_: int,
        content_hash: bytes,
        cid: str,
        salt: bytes,
        proof: list[bytes],
    ) -> TxResult:
        return self._tx(
            sender, "revealValidationChunk", job_id, round_, content_hash, cid, salt, list(proof)
        )

    # -- disputes (DisputeCourt) ------------------------------------------------------------
    def challenge(
        self, challenger: LocalAccount, job_id: int, round_: int, digest: bytes
    ) -> tuple[int, TxResult]:
        result = self._court_tx(challenger, "challenge", job_id, round_, digest)
        opened = self.court.events.DisputeOpened()
        (event,) = opened.process_receipt(result.receipt, errors=DISCARD)
        return int(event["args"]["disputeId"]), result

    def commit_vote(self, member: LocalAccount, dispute_id: int, commitment: bytes) -> TxResult:
        return self._court_tx(member, "commitVote", dispute_id, commitment)

    def reveal_vote(
        self, member: LocalAccount, dispute_id: int, digest: bytes, salt: bytes
    ) -> TxResult:
        return self._court_tx(member, "revealVote", dispute_id, digest, salt)

    def resolve(self, sender: LocalAccount, dispute_id: int) -> TxResult:
        return self._court_tx(sender, "resolve", dispute_id)

    def post_correction(
        self,
        sender: LocalAccount,
        dispute_id: int,
        fix: RoundPost,
        posted: RoundPost,
    ) -> TxResult:
        return self._court_tx(
            sender,
            "postCorrection",
            dispute_id,
            (fix.model_hash, fix.scores, fix.reasons),
            fix.model_cid,
            (posted.model_hash, posted.scores, posted.reasons),
        )

    def lapse(self, sender: LocalAccount, dispute_id: int) -> TxResult:
        """Close an overturned dispute whose correction nobody posted in time."""
        return self._court_tx(sender, "lapse", dispute_id)

    def dispute(self, dispute_id: int) -> dict[str, Any]:
        outputs = next(i["outputs"] for i in self.court.abi if i.get("name") == "getDispute")
        value = self._court_view("getDispute", dispute_id)
        return _named(outputs, value)

    def latest_dispute_of(self, job_id: int) -> int:
        return int(self._court_view("latestDisputeOf", job_id))

    def vote_of(self, dispute_id: int, member: str) -> bytes:
        return bytes(self._court_view("voteOf", dispute_id, Web3.to_checksum_address(member)))

    def has_committed(self, dispute_id: int, member: str) -> bool:
        return bool(self._court_view("hasCommitted", dispute_id, Web3.to_checksum_address(member)))

    def court_params(self) -> dict[str, int]:
        return {
            "challenge_bond": int(self._court_view("challengeBond")),
            "vote_bond": int(self._court_view("voteBond")),
            "committee_size": int(self._court_view("COMMITTEE_SIZE")),
        }

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
        return self._events_of(self.contract, event, from_block, filters)

    def _events_of(
        self, contract: Contract, event: str, from_block: int, filters: dict[str, Any]
    ) -> list[Any]:
        return self.events.query(contract, event, from_block, filters)

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
        logs = self._logs("RoundPosted", self._since(job_id), jobId=job_id)
        return sorted((_round_post(log) for log in logs), key=lambda p: p.round)

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

    def validation_chunks(self, job_id: int) -> dict[int, tuple[bytes, str]]:
        """round -> (sha256, cid) of each validation chunk revealed so far."""
        out = {}
        for log in self._logs("ValidationChunkRevealed", self._since(job_id), jobId=job_id):
            a = log["args"]
            out[int(a["round"])] = (bytes(a["contentHash"]), str(a["cid"]))
        return out

    def corrections(self, job_id: int) -> dict[int, RoundPost]:
        """round -> the result a dispute put in place of the posted one (RoundCorrected)."""
        logs = self._logs("RoundCorrected", self._since(job_id), jobId=job_id)
        return {post.round: post for post in map(_round_post, logs)}

    def job_events(self, job_id: int, event: str) -> list[dict[str, Any]]:
        """Arguments of every FedMarket `event` log of job `job_id`, in chain order."""
        return [dict(log["args"]) for log in self._logs(event, self._since(job_id), jobId=job_id)]

    def aggregator_bond_slashed(self, job_id: int) -> int:
        """Wei of the aggregator's bond a dispute or a missed post took in job `job_id`."""
        logs = self._logs("AggregatorBondSlashed", self._since(job_id), jobId=job_id)
        return sum(int(log["args"]["amount"]) for log in logs)

    def court_logs(self, event: str, from_block: int = 0, **filters: Any) -> list[Any]:
        """Decoded DisputeCourt events named `event` (optionally filtered by argument)."""
        return self._events_of(self.court, event, from_block, filters)

    def registry_logs(self, event: str, from_block: int = 0, **filters: Any) -> list[Any]:
        """Decoded ReliabilityRegistry events named `event` (e.g. ReliabilityUpdated)."""
        return self._events_of(self.registry, event, from_block, filters)

    def results(self, job_id: int) -> list[RoundPost]:
        """Each posted round's result of record: the post, or the correction that replaced it."""
        fixed = self.corrections(job_id)
        return [fixed.get(p.round, p) for p in self.round_posts(job_id)]

    def current_model(self, job_id: int) -> tuple[bytes, str]:
        """(sha256, cid) of the job's current global model."""
        posts = self.results(job_id)
        if posts:
            return posts[-1].model_hash, posts[-1].model_cid
        created = self.job_created(job_id)
        params = created["params"]
        return bytes(params["initialModelHash"]), str(params["initialModelCid"])

    def spec_pointer(self, job_id: int) -> tuple[bytes, str]:
        params = self.job_created(job_id)["params"]
        return bytes(params["specHash"]), str(params["specCid"])
