"""Hypothesis stateful test: random actors drive random sequences of every market and court
operation — bonded jobs, commits and reveals, honest or lying posts, validation chunks revealed
or withheld, challenges (honest and frivolous), committee votes with absentees, resolutions and
corrections, abandon, forfeit, finalize, claims and withdrawals.

The model: trainers 3, 4, 5 are honest, trainer 6 submits garbage. The *correct* result of a
round scores every honest revealer, flags trainer 6 if it revealed, and marks non-revealers
missing. The aggregator posts either the correct result or a lie (honest revealers flagged,
trainer 6 on top). Honest parties behave as the protocol expects: a lie is challenged as soon
as its chunk is out, the committee (honest verifiers, at most one absent) votes the correct
digest, and the correction is posted.

After every step: the market's ETH balance equals Σ vault balances + Σ over jobs of
(reward + slashedPool + bond forfeited into the job − paid out), to the wei; every vault
balance matches the model (which follows the value sent and the stake-moving events); locked ≤
balance; each ended job's payouts add up exactly (rewards + refund + paid + burned + forfeit
dust); nobody is paid twice; and an honest trainer never ends a job with less stake than the
correct result leaves it (all of it), nor holds less in the vault than it put in once no lie is
pending against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contract_harness import (
    ABANDONED,
    CANCELLED,
    CHALLENGE_BOND,
    CREATED,
    D_CORRECTED,
    D_UPHELD,
    D_VOTING,
    ETH,
    FINISHED,
    MISSING,
    OUTLIER,
    ROLE_AGGREGATOR,
    ROLE_VERIFIER,
    RUNNING,
    SETTLED,
    TX_GAS,
    Chain,
    Posted,
    Update,
    commitment,
    decode_error,
    make_update,
    revert_data,
    vote_commitment,
)
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from web3.logs import DISCARD

OWNERS = (0, 1)
AGGREGATOR = 2
HONEST = (3, 4, 5)
GARBAGE = 6
TRAINERS = (*HONEST, GARBAGE)
STRANGER = 7
VERIFIERS = (9, 10, 11, 12)
WATCHDOG = 13  # an honest verifier that challenges lies when no honest trainer can
ANYONE = (0, AGGREGATOR, 3, GARBAGE, STRANGER, 9)
CLAIMABLE = (SETTLED, ABANDONED, CANCELLED)
MAX_JOBS = 3


@dataclass
class JobModel:
    owner: str
    reward: int
    stake: int
    forfeited: int = 0  # the aggregator bond an abandon moved into the job
    paid: int = 0
    burned: int = 0
    parts: list[str] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)
    refund_claimed: bool = False
    updates: dict[str, Update] = field(default_factory=dict)
    posted: dict[int, Posted] = field(default_factory=dict)
    correct: dict[int, Posted] = field(default_factory=dict)
    lie_pending: bool = False  # a posted lie not yet corrected or voided


class MarketMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain = Chain(num_accounts=14)
        self.m = self.chain.market
        self.c = self.chain.court
        self.acc = self.chain.accounts
        self.vault: dict[str, int] = {}
        self.put_in: dict[str, int] = {}  # net ETH each account put into the vault itself
        self.jobs: dict[int, JobModel] = {}
        self.disputes: dict[int, tuple[int, int]] = {}  # open dispute -> (job, round)

    # ------------------------------------------------------------------ plumbing
    def send(self, fn, sender: str, value: int = 0):
        """Send a transaction: (receipt, ETH the sender received) on success, (None, error
        name) on revert (checked first as a call on the pending block: nothing is mined)."""
        try:
            fn.call({"from": sender, "value": value}, block_identifier="pending")
        except TransactionFailed as exc:
            name, _ = decode_error(revert_data(exc))
            assert name not in ("Panic", "Error"), f"unexpected {name}"
            return None, name
        before = self.chain.balance(sender)
        h = fn.transact({"from": sender, "value": value, "gas": TX_GAS})
        receipt = self.chain.w3.eth.get_transaction_receipt(h)
        assert receipt["status"] == 1
        received = (
            self.chain.balance(sender)
            - before
            + receipt["gasUsed"] * receipt["effectiveGasPrice"]
            + value
        )
        self.apply_events(receipt)
        return receipt, received

    def logs(self, name: str, receipt, contract=None) -> list[dict]:
        contract = contract or self.m
        return [
            dict(e["args"])
            for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)
        ]

    def apply_events(self, receipt) -> None:
        """Follow every stake-moving event into the vault model."""
        for ev in self.logs("TrainerSlashed", receipt):
            self.vault[ev["trainer"]] -= ev["amount"]
        for ev in self.logs("SlashReversed", receipt):
            self.vault[ev["trainer"]] += ev["amount"]
        for ev in self.logs("StakeTransferred", receipt):
            self.vault[ev["from"]] -= ev["amount"]
            self.vault[ev["to"]] = self.vault.get(ev["to"], 0) + ev["amount"]
        corrected = self.logs("RoundCorrected", receipt)
        for ev in self.logs("AggregatorBondSlashed", receipt):
            if not corrected:  # abandon: the bond moves into the job
                self.vault[ev["aggregator"]] -= ev["amount"]
                self.jobs[ev["jobId"]].forfeited += ev["amount"]
        for ev in self.logs("SlashedStakeBurned", receipt):
            self.jobs[ev["jobId"]].burned += ev["amount"]

    def fund(self, addr: str, amount: int) -> None:
        self.vault[addr] = self.vault.get(addr, 0) + amount
        self.put_in[addr] = self.put_in.get(addr, 0) + amount

    def info(self, job: int) -> dict:
        return self.chain.job(job)

    def pick(self, i: int, want=None) -> int:
        """A job, preferring one in status ``want`` (keeps the rules productive)."""
        ids = sorted(self.jobs)
        if want is not None:
            good = [j for j in ids if self.info(j)["status"] in want]
            if good:
                return good[i % len(good)]
        return ids[i % len(ids)]

    def now(self) -> int:
        return self.chain.next_timestamp()

    # ------------------------------------------------------------------ set-up
    @initialize(n=st.integers(2, 4), stake=st.sampled_from([0, 10**17 + 1, ETH]))
    def bootstrap(self, n: int, stake: int) -> None:
        """Trainers, an aggregator, verifiers; one job they are joining."""
        for a in TRAINERS:
            self.register(a, 5 * ETH)
        agg = self.acc[AGGREGATOR]
        receipt, res = self.send(self.m.functions.registerRole(ROLE_AGGREGATOR), agg, 40 * ETH)
        assert receipt is not None, res
        self.fund(agg, 40 * ETH)
        for v in (*VERIFIERS, WATCHDOG):
            amount = 5 * ETH if v == WATCHDOG else 2 * ETH
            receipt, res = self.send(
                self.m.functions.registerRole(ROLE_VERIFIER), self.acc[v], amount
            )
            assert receipt is not None, res
            self.fund(self.acc[v], amount)
        self.create(0, 10**19 + 3, 2, n, stake, 777, 0, 50)
        for a in TRAINERS[:n]:
            self.join(a, 0)

    # ------------------------------------------------------------------ vault rules
    @rule(a=st.sampled_from((*TRAINERS, STRANGER)), amount=st.integers(1, 4 * ETH))
    def register(self, a: int, amount: int) -> None:
        addr = self.acc[a]
        receipt, res = self.send(self.m.functions.register(), addr, amount)
        if addr in self.vault:
            assert res == "AlreadyRegistered"
        else:
            assert receipt is not None, res
            self.fund(addr, amount)

    @rule(a=st.sampled_from((*TRAINERS, AGGREGATOR, STRANGER)), amount=st.integers(1, 2 * ETH))
    def deposit(self, a: int, amount: int) -> None:
        addr = self.acc[a]
        receipt, res = self.send(self.m.functions.deposit(), addr, amount)
        if addr not in self.vault:
            assert res == "NotRegistered"
        else:
            assert receipt is not None, res
            self.fund(addr, amount)

    @rule(a=st.sampled_from((*TRAINERS, AGGREGATOR, 9)), frac=st.sampled_from([1, 2, 4]))
    def withdraw(self, a: int, frac: int) -> None:
        addr = self.acc[a]
        if addr not in self.vault:
            return
        balance, locked, _ = self.chain.account(addr)
        amount = balance // frac
        if amount == 0:
            return
        until = self.m.functions.cooldownOf(addr).call()
        receipt, res = self.send(self.m.functions.withdraw(amount), addr)
        if self.now() < until:
            assert res == "BondCoolingDown", res  # a released bond waits out its cooldown
        elif amount > balance - locked:
            assert res == "InsufficientFreeStake", res  # locked stake is never withdrawable
        else:
            assert receipt is not None, res
            assert res == amount
            self.vault[addr] -= amount
            self.put_in[addr] = self.put_in.get(addr, 0) - amount

    # ------------------------------------------------------------------ job rules
    @rule(
        o=st.sampled_from(OWNERS),
        reward=st.integers(1, 10**19),
        rounds=st.integers(1, 2),
        max_trainers=st.integers(2, 4),
        stake=st.sampled_from([0, 10**17 + 1, ETH]),
        slash_bps=st.sampled_from([0, 777, 10_000]),
        bond=st.sampled_from([0, 1, 3 * ETH, 10**20]),
        window=st.sampled_from([10, 50]),
    )
    @precondition(lambda self: len(self.jobs) < MAX_JOBS)
    def create(
        self,
        o: int,
        reward: int,
        rounds: int,
        max_trainers: int,
        stake: int,
        slash_bps: int,
        bond: int,
        window: int,
    ) -> None:
        owner = self.acc[o]
        job = int(self.m.functions.nextJobId().call())
        agg = self.acc[AGGREGATOR]
        free = self.chain.free(agg)
        self.chain.validation[job] = vset = __import__("contract_harness").ValidationSet.make(
            rounds, tag=f"job{job}"
        )
        from contract_harness import job_params, params_tuple

        p = job_params(
            agg,
            rounds=rounds,
            minTrainers=2,
            maxTrainers=max_trainers,
            stakeRequired=stake,
            slashBps=slash_bps,
            aggregatorBond=bond,
            challengeWindow=window,
            validationRoot=vset.root,
        )
        receipt, res = self.send(self.m.functions.createJob(params_tuple(p)), owner, reward)
        if (bond or reward) > free:
            assert res == "AggregatorBondTooLow", res
            return
        assert receipt is not None, res
        self.jobs[job] = JobModel(owner, reward, stake)

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(TRAINERS), j=st.integers(0, 7))
    def join(self, a: int, j: int) -> None:
        job, addr = self.pick(j, (CREATED,)), self.acc[a]
        receipt, res = self.send(self.m.functions.join(job), addr)
        if receipt is None:
            assert res in {
                "WrongStatus",
                "NotRegistered",
                "AlreadyJoined",
                "JoinClosed",
                "InsufficientFreeStake",
            }, res
            return
        self.jobs[job].parts.append(addr)

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ANYONE), j=st.integers(0, 7))
    def start(self, a: int, j: int) -> None:
        job = self.pick(j, (CREATED,))
        _receipt, res = self.send(self.m.functions.start(job), self.acc[a])
        if self.acc[a] != self.jobs[job].owner:
            assert res == "NotOwner"

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ANYONE), j=st.integers(0, 7), coin=st.integers(0, 2))
    def cancel(self, a: int, j: int, coin: int) -> None:
        if coin:
            return  # cancelling kills a job: keep it rarer than the other steps
        job = self.pick(j)
        was = self.info(job)["status"]
        sender = self.acc[a]
        _receipt, res = self.send(self.m.functions.cancel(job), sender)
        if was != CREATED:
            assert res == "WrongStatus"
        elif sender in (self.jobs[job].owner, self.acc[AGGREGATOR]):
            assert _receipt is not None, res  # the owner and the aggregator always may

    # ------------------------------------------------------------------ rounds
    @precondition(lambda self: self.jobs)
    @rule(j=st.integers(0, 7), skip=st.integers(0, 4))
    def commit_all(self, j: int, skip: int) -> None:
        """Every participant but one (index ``skip``, if any) commits: drives rounds forward."""
        job = self.pick(j, (RUNNING,))
        for k, t in enumerate(self.jobs[job].parts):
            if k != skip:
                self.commit_to(job, t)

    def commit_to(self, job: int, addr: str) -> None:
        rnd = self.info(job)["currentRound"]
        u = make_update(addr, job, rnd)
        c = commitment(u.content_hash, u.cid, u.salt, addr, job, rnd)
        receipt, res = self.send(self.m.functions.commit(job, c), addr)
        if receipt is not None:
            self.jobs[job].updates[addr] = u
        elif addr not in self.jobs[job].parts:
            assert res == "NotParticipant"

    @precondition(lambda self: self.jobs)
    @rule(j=st.integers(0, 7), tamper=st.booleans())
    def reveal_all(self, j: int, tamper: bool) -> None:
        job = self.pick(j, (RUNNING,))
        info = self.info(job)
        if info["status"] == RUNNING and self.now() < info["commitEnd"]:
            self.chain.at(info["commitEnd"])
        for t in self.jobs[job].parts:
            u = self.jobs[job].updates.get(t) or make_update(t, job, 0)
            cid = u.cid + ("x" if tamper and t == self.acc[GARBAGE] else "")
            receipt, res = self.send(self.m.functions.reveal(job, u.content_hash, cid, u.salt), t)
            if cid != u.cid:
                assert receipt is None, res  # a tampered opening never matches

    def results(self, job: int, rnd: int, lie: bool, seed: int) -> tuple[Posted, Posted]:
        """(correct, posted) results of round ``rnd`` given who revealed."""
        parts = self.m.functions.participantsOf(job).call()
        good, bad = Posted(keccak(text=f"m{job}:{rnd}"), [], []), Posted(b"\xba" * 32, [], [])
        for k, t in enumerate(parts):
            revealed = self.chain.participant(job, t)["lastRevealRound"] == rnd
            if not revealed:
                entry = lie_entry = (0, MISSING)
            elif t == self.acc[GARBAGE]:
                entry, lie_entry = (0, OUTLIER), (3_000_000, 0)
            else:
                entry = (1 + (seed >> k) % 2_000_000, 0)
                lie_entry = (0, OUTLIER) if (seed >> (k + 8)) % 3 else entry
            for res, e in ((good, entry), (bad, lie_entry if lie else entry)):
                res.scores.append(e[0])
                res.reasons.append(e[1])
        if not lie:
            bad = good
        return good, bad

    @precondition(lambda self: self.jobs)
    @rule(j=st.integers(0, 7), seed=st.integers(0, 2**32), lie=st.booleans())
    def post(self, j: int, seed: int, lie: bool) -> None:
        job = self.pick(j, (RUNNING,))
        info = self.info(job)
        if info["status"] != RUNNING:
            return
        rnd = info["currentRound"]
        if self.now() < info["revealEnd"]:
            if info["commits"] == 0 or seed % 4 == 0:
                return  # let the round play out first most of the time
            self.chain.at(info["revealEnd"])
        if info["pendingRound"] and info["finalAt"] and not info["disputeOpen"]:
            self.chain.at_least(min(info["finalAt"] + 1, info["postDeadline"]))
        good, bad = self.results(job, rnd, lie, seed)
        fn = self.m.functions.postRound(job, rnd, bad.model_hash, "bafy-m", bad.scores, bad.reasons)
        receipt, res = self.send(fn, self.acc[AGGREGATOR])
        if receipt is None:
            assert res in {
                "RoundNotFinal",
                "DisputeOpen",
                "PostDeadlinePassed",
                "RevealPhaseOpen",
            }, res
            return
        model = self.jobs[job]
        model.posted[rnd], model.correct[rnd] = bad, good
        model.lie_pending = bad.digest(job, rnd) != good.digest(job, rnd)

    @precondition(lambda self: self.jobs)
    @rule(j=st.integers(0, 7), who=st.sampled_from((0, AGGREGATOR, STRANGER)), late=st.integers(0, 5))
    def reveal_chunk(self, j: int, who: int, late: int) -> None:
        """The chunk holder reveals it (rarely too late); an honest party challenges a lie at
        once."""
        job = self.pick(j, (RUNNING, FINISHED))
        info = self.info(job)
        rnd = info["pendingRound"]
        if rnd == 0 or info["finalAt"] != 0:
            return
        due = info["postedAt"] + info["postDuration"]
        if late == 0:
            self.chain.at_least(due + 1)
        sender = self.acc[who] if who != 0 else self.jobs[job].owner
        receipt, res = self.send(self.chain.reveal_chunk_fn(job, rnd), sender)
        if self.now() > due:
            assert res == "ChunkRevealClosed", res
            return
        assert receipt is not None, res
        model = self.jobs[job]
        if model.lie_pending:
            self.challenge_lie(job, rnd)

    def challenge_lie(self, job: int, rnd: int) -> None:
        model = self.jobs[job]
        digest = model.correct[rnd].digest(job, rnd)
        honest = [self.acc[a] for a in HONEST if self.acc[a] in model.parts]
        able = [t for t in honest if self.chain.free(t) >= CHALLENGE_BOND]
        challenger = able[0] if able else self.acc[WATCHDOG]
        did = int(self.c.functions.nextDisputeId().call())
        receipt, res = self.send(self.c.functions.challenge(job, rnd, digest), challenger)
        assert receipt is not None, res
        self.disputes[did] = (job, rnd)

    @precondition(lambda self: self.jobs)
    @rule(j=st.integers(0, 7), who=st.sampled_from((GARBAGE, 12, STRANGER, 3)))
    def frivolous_challenge(self, j: int, who: int) -> None:
        job = self.pick(j, (RUNNING, FINISHED))
        info = self.info(job)
        rnd = info["pendingRound"]
        model = self.jobs[job]
        if rnd == 0 or model.lie_pending:
            return
        sender = self.acc[who]
        did = int(self.c.functions.nextDisputeId().call())
        receipt, res = self.send(self.c.functions.challenge(job, rnd, b"\x0f" * 32), sender)
        if receipt is None:
            assert res in {
                "ChallengeWindowClosed",
                "DisputeOpen",
                "NotChallenger",
                "InsufficientFreeStake",
                "WrongStatus",
                "ConflictOfInterest",
            }, res
            return
        self.disputes[did] = (job, rnd)

    @precondition(lambda self: self.disputes)
    @rule(k=st.integers(0, 7), absent=st.integers(0, 5), poster=st.sampled_from(ANYONE))
    def settle_dispute(self, k: int, absent: int, poster: int) -> None:
        """The committee votes the correct digest (member ``absent`` stays away, if < 3); the
        dispute is resolved and an overturned round corrected."""
        did = sorted(self.disputes)[k % len(self.disputes)]
        job, rnd = self.disputes.pop(did)
        model = self.jobs[job]
        good, was = model.correct[rnd], model.posted[rnd]
        digest = good.digest(job, rnd)
        d = self.chain.dispute(did)
        assert d["state"] == D_VOTING
        voters = [mm for i, mm in enumerate(d["members"]) if i != absent]
        salts = {}
        for mm in voters:
            salts[mm] = keccak(text=f"{mm}:{did}")
            fn = self.c.functions.commitVote(did, vote_commitment(digest, salts[mm], mm, did))
            receipt, res = self.send(fn, mm)
            assert receipt is not None, res
        if len(voters) < 3:
            self.chain.at_least(d["commitEnd"])
        for mm in voters:
            receipt, res = self.send(self.c.functions.revealVote(did, digest, salts[mm]), mm)
            assert receipt is not None, res
        if len(voters) < 3:
            self.chain.at_least(d["revealEnd"])
        receipt, res = self.send(self.c.functions.resolve(did), self.acc[poster])
        assert receipt is not None, res
        state = self.chain.dispute(did)["state"]
        if digest == was.digest(job, rnd):
            assert state == D_UPHELD  # a frivolous challenge loses
            return
        fn = self.c.functions.postCorrection(did, good.as_tuple(), "bafy-fix", was.as_tuple())
        receipt, res = self.send(fn, self.acc[poster])
        assert receipt is not None, res
        assert self.chain.dispute(did)["state"] == D_CORRECTED
        model.posted[rnd] = good
        model.lie_pending = False

    @precondition(lambda self: self.jobs)
    @rule(seconds=st.sampled_from([30, 60, 120, 350]))
    def wait(self, seconds: int) -> None:
        self.chain.at(self.now() + seconds)

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ANYONE), j=st.integers(0, 7), coin=st.integers(0, 2))
    def abandon(self, a: int, j: int, coin: int) -> None:
        if coin:
            return  # abandoning kills a job: keep it rarer than the other steps
        job = self.pick(j, (RUNNING,))
        info = self.info(job)
        if info["status"] == RUNNING and self.now() <= info["postDeadline"]:
            self.chain.at(info["postDeadline"] + 1)
        info = self.info(job)
        receipt, res = self.send(self.m.functions.abandon(job), self.acc[a])
        if receipt is None:
            assert res in {"WrongStatus", "DisputeOpen", "RoundNotFinal"}, res
            if res == "RoundNotFinal":
                assert info["finalAt"] == 0  # a withheld chunk: the owner's fault
        else:
            assert info["status"] == RUNNING and not self.jobs[job].lie_pending

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ANYONE), j=st.integers(0, 7))
    def forfeit(self, a: int, j: int) -> None:
        job = self.pick(j, (RUNNING, FINISHED))
        info = self.info(job)
        rnd = info["pendingRound"]
        model = self.jobs[job]
        if rnd == 0 or info["finalAt"] != 0 or rnd not in model.posted:
            return
        self.chain.at_least(info["postedAt"] + info["postDuration"] + 1)
        fn = self.m.functions.forfeit(job, model.posted[rnd].as_tuple())
        receipt, res = self.send(fn, self.acc[a])
        assert receipt is not None, res
        assert self.info(job)["ownerForfeited"]
        model.lie_pending = False  # the unverifiable round is void

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ANYONE), j=st.integers(0, 7))
    def finalize(self, a: int, j: int) -> None:
        job = self.pick(j, (FINISHED,))
        info = self.info(job)
        if info["status"] == FINISHED and info["finalAt"] and not info["disputeOpen"]:
            self.chain.at_least(info["finalAt"] + 1)
        receipt, res = self.send(self.m.functions.finalize(job), self.acc[a])
        if info["status"] != FINISHED:
            assert res == "WrongStatus"
        elif receipt is None:
            assert res in {"RoundNotFinal", "DisputeOpen"}, res
        else:
            assert not self.jobs[job].lie_pending  # a lie is never settled

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from((*TRAINERS, 0)), j=st.integers(0, 7))
    def claim(self, a: int, j: int) -> None:
        job, addr = self.pick(j, CLAIMABLE), self.acc[a]
        model = self.jobs[job]
        was = self.info(job)["status"]
        expected = self.m.functions.rewardOf(job, addr).call()
        locked = self.chain.participant(job, addr)["lockedStake"]
        receipt, res = self.send(self.m.functions.claim(job), addr)
        if addr in model.claimed:
            assert res == "AlreadyClaimed"  # nobody claims twice
        elif addr not in model.parts:
            assert res == "NotParticipant"
        elif was not in CLAIMABLE:
            assert res == "WrongStatus"
        else:
            assert receipt is not None, res
            assert res == expected
            assert self.logs("RewardClaimed", receipt)[0]["stakeUnlocked"] == locked
            if addr in (self.acc[h] for h in HONEST):
                assert locked == model.stake  # an honest trainer leaves with all its stake
            model.claimed.add(addr)
            model.paid += res

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(OWNERS), j=st.integers(0, 7))
    def claim_refund(self, a: int, j: int) -> None:
        job, addr = self.pick(j, CLAIMABLE), self.acc[a]
        model = self.jobs[job]
        was = self.info(job)["status"]
        receipt, res = self.send(self.m.functions.claimRefund(job), addr)
        if addr != model.owner:
            assert res == "NotOwner"
        elif was not in CLAIMABLE:
            assert res == "WrongStatus"
        elif model.refund_claimed:
            assert res == "AlreadyClaimed"
        else:
            assert receipt is not None, res
            assert res == self.info(job)["ownerRefund"] <= model.reward
            model.refund_claimed = True
            model.paid += res

    # ------------------------------------------------------------------ invariants
    @invariant()
    def eth_is_conserved(self) -> None:
        held = self.chain.balance(self.m.address)
        jobs = 0
        for job, model in self.jobs.items():
            info = self.info(job)
            jobs += model.reward + info["slashedPool"] + model.forfeited - model.paid
            assert model.paid <= model.reward + info["slashedPool"] + model.forfeited
            if info["status"] in (SETTLED, ABANDONED):
                rewards = sum(self.m.functions.rewardOf(job, t).call() for t in model.parts)
                refund = 0 if model.refund_claimed else info["ownerRefund"]
                pool = info["forfeitPool"]
                dust = pool % info["reveals"] if pool else 0
                # unclaimed + refund + paid + burned + dust == what the job ever held, exactly
                assert rewards + refund + model.paid + model.burned + dust == (
                    model.reward + info["slashedPool"] + model.forfeited
                )
                assert info["ownerRefund"] <= model.reward
                for t in model.parts:
                    if t in (self.acc[h] for h in HONEST) and t not in model.claimed:
                        locked = self.chain.participant(job, t)["lockedStake"]
                        assert locked == model.stake, (job, t, locked)
            elif info["status"] == CANCELLED:
                assert (0 if model.refund_claimed else info["ownerRefund"]) + model.paid == (
                    model.reward
                )
        assert held == sum(self.vault.values()) + jobs

    @invariant()
    def stake_matches_model(self) -> None:
        lies = {t for m in self.jobs.values() if m.lie_pending for t in m.parts}
        for addr, balance in self.vault.items():
            b, locked, registered = self.chain.account(addr)
            assert registered and b == balance >= locked
            if addr in (self.acc[h] for h in HONEST) and addr not in lies:
                assert b >= self.put_in.get(addr, 0)  # honest stake never lost


MarketMachine.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMarketMachine = MarketMachine.TestCase
