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

from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from contract_harness import (
    ABANDONED,
    CANCELLED,
    CHALLENGE_BOND,
    CREATED,
    D_CORRECTED,
    D_NO_DECISION,
    D_UPHELD,
    D_VOTING,
    ETH,
    FINISHED,
    MISSING,
    OUTLIER,
    PPM,
    ROLE_AGGREGATOR,
    ROLE_VERIFIER,
    RUNNING,
    SETTLED,
    TX_GAS,
    UNAVAILABLE,
    Chain,
    Posted,
    Update,
    commitment,
    decode_error,
    fold_reliability,
    make_update,
    revert_data,
    vote_commitment,
)
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from hypothesis import HealthCheck, Phase, settings
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
    slashed: int = 0  # the job's slashedPool, followed through TrainerSlashed / SlashReversed
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
    missed: dict[str, int] = field(default_factory=dict)  # missed-round charges at settlement


class MarketMachine(RuleBasedStateMachine):
    seen: ClassVar[Counter] = Counter()  # paths taken, over every run (test_every_path_was_taken)

    def __init__(self) -> None:
        super().__init__()
        self.chain = Chain(num_accounts=14)
        self.m = self.chain.market
        self.c = self.chain.court
        self.acc = self.chain.accounts
        self.vault: dict[str, int] = {}
        self.put_in: dict[str, int] = {}  # net ETH each account put into the vault itself
        self.jobs: dict[int, JobModel] = {}
        self.honest = {self.acc[h] for h in HONEST}
        self.disputes: dict[int, tuple[int, int]] = {}  # open dispute -> (job, round)
        self.checked: dict[int, tuple] = {}  # ended job -> the model state last checked
        self.missed_paid: dict[str, int] = {}  # what each account paid for missed rounds
        self.reliability: dict[str, list[int]] = {}  # the registry's records, folded in Python

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
            self.jobs[ev["jobId"]].slashed += ev["amount"]
            if ev["round"] == 0:  # a missed-round charge at settlement (reason 1)
                assert ev["reason"] == 1
                t, missed = ev["trainer"], self.jobs[ev["jobId"]].missed
                missed[t] = missed.get(t, 0) + ev["amount"]
                self.missed_paid[t] = self.missed_paid.get(t, 0) + ev["amount"]
        for ev in self.logs("SlashReversed", receipt):
            self.vault[ev["trainer"]] += ev["amount"]
            self.jobs[ev["jobId"]].slashed -= ev["amount"]
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
        # Reliability: each settlement reports the job's stake, and the registry's update is
        # exactly the Python fold of the contributions it reports.
        for ev in self.logs("ReliabilityUpdated", receipt, self.chain.registry):
            t = ev["trainer"]
            assert ev["stake"] == self.jobs[ev["jobId"]].stake
            assert 0 <= ev["contributionPpm"] <= PPM
            after = fold_reliability(
                self.reliability.get(t, [0, 0, 0]), ev["contributionPpm"], ev["stake"]
            )
            assert after == [ev["reliabilityPpm"], ev["jobs"], ev["weight"]], (t, ev)
            self.reliability[t] = after
            self.seen["reliability recorded"] += 1
        for ev in self.logs("RoundPosted", receipt):
            if UNAVAILABLE in ev["reasons"]:
                self.seen["reason 2 posted"] += 1

    def fund(self, addr: str, amount: int) -> None:
        self.vault[addr] = self.vault.get(addr, 0) + amount
        self.put_in[addr] = self.put_in.get(addr, 0) + amount

    def info(self, job: int) -> dict:
        return self.chain.job(job)

    def pick(self, i: int, want=None) -> int:
        """A job, preferring one in status ``want`` (keeps the rules productive)."""
        ids = sorted(self.jobs)
        if want is not None:
            good = [j for j in ids if self.chain.status(j) in want]
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
            self.rejoin_pool(self.acc[v])
        self.create(0, 10**19 + 3, 2, n, stake, 777, 0, 50)
        for a in TRAINERS[:n]:
            self.join(a, 0)
        # a second, one-round job of the garbage trainer and one honest trainer
        self.create(1, 3 * ETH + 1, 1, 2, ETH, 10_000, 1, 10)
        for a in (GARBAGE, HONEST[-1]):
            self.join(a, 1)

    # ------------------------------------------------------------------ vault rules
    @rule(a=st.sampled_from((STRANGER, GARBAGE)), amount=st.integers(1, 4 * ETH))
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
        until = self.chain.view(self.m.functions.cooldownOf(addr))
        receipt, res = self.send(self.m.functions.withdraw(amount), addr)
        if self.now() < until:
            assert res == "BondCoolingDown", res  # a released bond waits out its cooldown
            self.seen["cooldown"] += 1
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
            postDuration=300,  # room for other jobs' waits (a dispute takes 2 x postDuration)
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
    def advance(
        self, j: int, skip_commit: int, skip_reveal: int, tamper: bool, seed: int, lie: bool
    ) -> None:
        for k in range(1 + seed % 3):
            self.step(j + k, skip_commit, skip_reveal, tamper, seed >> (2 * k), lie)
        if seed % 5 == 0:  # someone collects from an ended job
            who = (*TRAINERS, *OWNERS)[(seed >> 8) % (len(TRAINERS) + len(OWNERS))]
            self.claim(who, j)

    # The step that moves jobs forward, under five names: Hypothesis's swarm testing turns
    # rules off per run by name, and a run that cannot advance its jobs tests little. (They
    # also sort first: Hypothesis's simplest run repeats the first rule.)
    _advance_args: ClassVar[dict] = {
        "j": st.integers(0, 7),
        "skip_commit": st.integers(0, 15),
        "skip_reveal": st.integers(0, 15),
        "tamper": st.booleans(),
        "seed": st.integers(0, 2**32),
        "lie": st.sampled_from([False, False, True]),  # one post in three lies
    }

    @precondition(lambda self: self.jobs)
    @rule(**_advance_args)
    def advance_jobs(self, **kw) -> None:
        self.advance(**kw)

    @precondition(lambda self: self.jobs)
    @rule(**_advance_args)
    def advance_rounds(self, **kw) -> None:
        self.advance(**kw)

    @precondition(lambda self: self.jobs)
    @rule(**_advance_args)
    def advance_more(self, **kw) -> None:
        self.advance(**kw)

    @precondition(lambda self: self.jobs)
    @rule(**_advance_args)
    def advance_once_more(self, **kw) -> None:
        self.advance(**kw)

    @precondition(lambda self: self.jobs)
    @rule(**_advance_args)
    def advance_again(self, **kw) -> None:
        self.advance(**kw)

    def step(
        self, j: int, skip_commit: int, skip_reveal: int, tamper: bool, seed: int, lie: bool
    ) -> None:
        """Take a job one step further, as the honest parties would: reveal the pending
        round's chunk (the owner; an honest party then challenges a lie at once) unless the
        owner withholds it (seed), settle an open dispute, or play the next round: commit
        (all but one, maybe), reveal (all but one, maybe; trainer 6 maybe with a tampered
        opening, which never matches), and post the correct result or a lie once the
        previous round is final; or finalize a finished job."""
        job = self.pick(j, (RUNNING, FINISHED))
        info = self.info(job)
        status, pending = info["status"], info["pendingRound"]
        if status == CREATED:  # nothing is running: the owner starts what it can
            receipt, res = self.send(self.m.functions.start(job), self.jobs[job].owner)
            assert receipt is not None or res in {"NotEnoughTrainers", "StartTooLate"}, res
            return
        if status not in (RUNNING, FINISHED):
            return
        if pending and info["finalAt"] == 0:
            if seed % 4 == 0:  # the owner withholds the chunk: anyone ends the job after it
                self.chain.at_least(info["postedAt"] + info["postDuration"] + 1)
            if self.now() > info["postedAt"] + info["postDuration"]:
                self.forfeit_job(job, self.acc[ANYONE[seed % len(ANYONE)]])
            else:
                self.reveal_chunk_of(job, self.jobs[job].owner, seed % 12)
            return
        if info["disputeOpen"]:
            did = max(d for d, (jb, _r) in self.disputes.items() if jb == job)
            self.settle(did, seed % 12, self.acc[ANYONE[seed % len(ANYONE)]])
            return
        if status == FINISHED:
            self.chain.at_least(info["finalAt"] + 1)
            receipt, res = self.send(self.m.functions.finalize(job), self.acc[STRANGER])
            assert receipt is not None, res
            self.seen["finalize"] += 1
            assert not self.jobs[job].lie_pending  # a lie is never settled
            return
        if (seed >> 11) % 32 == 0:  # the aggregator goes silent
            self.chain.at_least(info["postDeadline"] + 1)
        if self.now() > info["postDeadline"]:  # the aggregator missed its post
            receipt, res = self.send(self.m.functions.abandon(job), self.acc[STRANGER])
            assert receipt is not None, res
            self.seen["abandon"] += 1
            return
        self.play(job, info, skip_commit, skip_reveal, tamper, seed, lie)

    def play(
        self,
        job: int,
        info: dict,
        skip_commit: int,
        skip_reveal: int,
        tamper: bool,
        seed: int,
        lie: bool,
    ) -> None:
        model = self.jobs[job]
        rnd = info["currentRound"]
        for k, t in enumerate(model.parts):
            if k != skip_commit and self.chain.participant(job, t)["lastCommitRound"] != rnd:
                u = make_update(t, job, rnd)
                c = commitment(u.content_hash, u.cid, u.salt, t, job, rnd)
                receipt, res = self.send(self.m.functions.commit(job, c), t)
                if receipt is not None:
                    model.updates[t] = u
                else:
                    assert res == "NotInCommitPhase", res
        self.chain.at_least(self.info(job)["commitEnd"])
        for k, t in enumerate(model.parts):
            u = model.updates.get(t)
            if k == skip_reveal or u is None:
                continue
            cid = u.cid + ("x" if tamper and t == self.acc[GARBAGE] else "")
            receipt, res = self.send(self.m.functions.reveal(job, u.content_hash, cid, u.salt), t)
            if cid != u.cid:
                assert receipt is None, res  # a tampered opening never matches
            elif receipt is None:
                assert res in {"NotInRevealPhase", "AlreadyRevealed", "NothingCommitted"}, res
        info = self.info(job)
        self.chain.at_least(info["revealEnd"])
        if info["pendingRound"]:
            self.chain.at_least(min(info["finalAt"] + 1, info["postDeadline"]))
        good, bad = self.results(job, rnd, lie, seed)
        fn = self.m.functions.postRound(job, rnd, bad.model_hash, "bafy-m", bad.scores, bad.reasons)
        receipt, res = self.send(fn, self.acc[AGGREGATOR])
        if receipt is None:
            assert res in {"RoundNotFinal", "PostDeadlinePassed"}, res
            return
        model.posted[rnd], model.correct[rnd] = bad, good
        model.lie_pending = bad.digest(job, rnd) != good.digest(job, rnd)
        self.seen["lie posted" if model.lie_pending else "correct post"] += 1
        if (seed >> 5) % 3:  # most owners reveal the chunk right away
            self.reveal_chunk_of(job, model.owner, (seed >> 7) % 12)

    def results(self, job: int, rnd: int, lie: bool, seed: int) -> tuple[Posted, Posted]:
        """(correct, posted) results of round ``rnd`` given who revealed."""
        parts = self.chain.parts(job)
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
    @rule(
        j=st.integers(0, 7), who=st.sampled_from((0, AGGREGATOR, STRANGER)), late=st.integers(0, 7)
    )
    def reveal_chunk(self, j: int, who: int, late: int) -> None:
        """Whoever holds the chunk reveals it (sometimes too late)."""
        job = self.pick(j, (RUNNING, FINISHED))
        info = self.info(job)
        if info["pendingRound"] == 0 or info["finalAt"] != 0:
            return
        if late == 0:
            self.chain.at_least(info["postedAt"] + info["postDuration"] + 1)
        self.reveal_chunk_of(job, self.acc[who] if who else self.jobs[job].owner, late)

    def reveal_chunk_of(self, job: int, sender: str, code: int = 4) -> None:
        """Reveal the pending round's chunk; an honest party challenges a lie at once (member
        ``code`` of the committee stays away if < 3); a correct round is challenged
        frivolously if ``code % 4 == 3``."""
        info = self.info(job)
        rnd = info["pendingRound"]
        due = info["postedAt"] + info["postDuration"]
        receipt, res = self.send(self.chain.reveal_chunk_fn(job, rnd), sender)
        if self.now() > due:
            assert res == "ChunkRevealClosed", res
            self.seen["chunk too late"] += 1
            return
        assert receipt is not None, res
        if self.jobs[job].lie_pending:
            self.challenge_lie(job, rnd, code)
        elif code % 4 == 3:  # the garbage trainer (or a verifier) disputes a correct round
            who = GARBAGE if self.acc[GARBAGE] in self.jobs[job].parts else 12
            did = self.challenge_frivolously(job, who)
            if did and code % 8 == 3:  # the committee votes at once (else: later, or never)
                self.settle(did, code, self.acc[STRANGER])

    def challenge_lie(self, job: int, rnd: int, absent: int) -> None:
        model = self.jobs[job]
        digest = model.correct[rnd].digest(job, rnd)
        honest = [self.acc[a] for a in HONEST if self.acc[a] in model.parts]
        able = [t for t in honest if self.chain.free(t) >= CHALLENGE_BOND]
        challenger = able[0] if able else self.acc[WATCHDOG]
        did = int(self.c.functions.nextDisputeId().call())
        receipt, res = self.send(self.c.functions.challenge(job, rnd, digest), challenger)
        assert receipt is not None, res
        self.disputes[did] = (job, rnd)
        # the honest committee re-runs the round and votes at once (one member may be away)
        self.settle(did, absent, self.acc[STRANGER])

    @precondition(lambda self: self.jobs)
    @rule(j=st.integers(0, 7), who=st.sampled_from((GARBAGE, 12, STRANGER, 3)))
    def frivolous_challenge(self, j: int, who: int) -> None:
        self.challenge_frivolously(self.pick(j, (RUNNING, FINISHED)), who)

    def challenge_frivolously(self, job: int, who: int) -> int:
        """Challenge a correct pending round with a made-up digest; the dispute's id (or 0)."""
        rnd = self.info(job)["pendingRound"]
        if rnd == 0 or self.jobs[job].lie_pending:
            return 0
        sender = self.acc[who]
        did = int(self.c.functions.nextDisputeId().call())
        receipt, res = self.send(self.c.functions.challenge(job, rnd, b"\x0f" * 32), sender)
        self.seen[f"frivolous challenge: {res or 'opened'}"] += 1
        if receipt is None:
            assert res in {
                "ChallengeWindowClosed",
                "DisputeOpen",
                "NotChallenger",
                "InsufficientFreeStake",
                "WrongStatus",
                "ConflictOfInterest",
            }, res
            return 0
        self.disputes[did] = (job, rnd)
        return did

    @precondition(lambda self: self.disputes)
    @rule(k=st.integers(0, 7), absent=st.integers(0, 11), poster=st.sampled_from(ANYONE))
    def settle_dispute(self, k: int, absent: int, poster: int) -> None:
        did = sorted(self.disputes)[k % len(self.disputes)]
        self.settle(did, absent, self.acc[poster])

    def settle(self, did: int, absent: int, poster: str) -> None:
        """The committee votes the correct digest (member ``absent`` stays away, if < 3); the
        dispute is resolved and an overturned round corrected."""
        job, rnd = self.disputes.pop(did)
        model = self.jobs[job]
        good, was = model.correct[rnd], model.posted[rnd]
        digest = good.digest(job, rnd)
        d = self.chain.dispute(did)
        assert d["state"] == D_VOTING
        voters = [mm for i, mm in enumerate(d["members"]) if i != absent]
        if self.now() >= d["commitEnd"]:
            voters = []  # too late to vote (only a frivolous challenge is left waiting)
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
        receipt, res = self.send(self.c.functions.resolve(did), poster)
        assert receipt is not None, res
        for mm in d["members"]:  # an honest member that was away rejoins the pool
            self.rejoin_pool(mm)
        state = self.chain.dispute(did)["state"]
        if digest == was.digest(job, rnd):
            # a frivolous challenge loses (or, with no majority voting, the round stands)
            assert state == (D_UPHELD if len(voters) >= 2 else D_NO_DECISION), state
            self.seen["frivolous upheld" if state == D_UPHELD else "no decision"] += 1
            return
        assert len(voters) >= 2
        fn = self.c.functions.postCorrection(did, good.as_tuple(), "bafy-fix", was.as_tuple())
        receipt, res = self.send(fn, poster)
        assert receipt is not None, res
        assert self.chain.dispute(did)["state"] == D_CORRECTED
        model.posted[rnd] = good
        model.lie_pending = False
        self.seen["lie corrected"] += 1

    def rejoin_pool(self, addr: str) -> None:
        if not self.c.functions.inPool(addr).call():
            receipt, res = self.send(self.c.functions.joinPool(), addr)
            assert receipt is not None, res

    @precondition(lambda self: self.jobs)
    @rule(seconds=st.sampled_from([10, 10, 30, 60, 350]))
    def wait(self, seconds: int) -> None:
        self.chain.at(self.now() + seconds)

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ANYONE), j=st.integers(0, 7), coin=st.integers(0, 9))
    def walk_away(self, a: int, j: int, coin: int) -> None:
        """Anyone abandons a running job once its post deadline passed (jumping there)."""
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
            self.seen["abandon"] += 1

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ANYONE), j=st.integers(0, 7))
    def forfeit(self, a: int, j: int) -> None:
        job = self.pick(j, (RUNNING, FINISHED))
        info = self.info(job)
        rnd = info["pendingRound"]
        if info["status"] not in (RUNNING, FINISHED) or rnd == 0 or info["finalAt"] != 0:
            return
        self.chain.at_least(info["postedAt"] + info["postDuration"] + 1)
        self.forfeit_job(job, self.acc[a])

    def forfeit_job(self, job: int, sender: str) -> None:
        model = self.jobs[job]
        rnd = self.info(job)["pendingRound"]
        fn = self.m.functions.forfeit(job, model.posted[rnd].as_tuple())
        receipt, res = self.send(fn, sender)
        assert receipt is not None, res
        assert self.info(job)["ownerForfeited"]
        self.seen["forfeit"] += 1
        model.lie_pending = False  # the unverifiable round is void

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from((*TRAINERS, *OWNERS)), j=st.integers(0, 7))
    def claim(self, a: int, j: int) -> None:
        """A trainer claims its reward, an owner its refund."""
        if a in OWNERS:
            self.claim_refund(a, j)
            return
        job, addr = self.pick(j, CLAIMABLE), self.acc[a]
        model = self.jobs[job]
        was = self.info(job)["status"]
        expected = self.chain.view(self.m.functions.rewardOf(job, addr))
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
            if addr in self.honest:  # an honest trainer leaves with all its stake, less only
                # what its missed rounds cost
                assert locked == model.stake - model.missed.get(addr, 0)
            model.claimed.add(addr)
            model.paid += res
            self.seen["claim"] += 1

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
            self.seen["refund"] += 1

    # ------------------------------------------------------------------ invariants
    @invariant()
    def eth_is_conserved(self) -> None:
        """Balance == Σ vault + Σ job holdings, every step (fast: vault read from storage)."""
        held = self.chain.balance(self.m.address)
        jobs = sum(m.reward + m.slashed + m.forfeited - m.paid for m in self.jobs.values())
        vault = 0
        for addr, balance in self.vault.items():
            b, locked, registered, _roles = self.chain.vault(addr)
            assert registered and b == balance >= locked, (addr, b, balance, locked)
            vault += b
        assert held == vault + jobs, (held, vault, jobs)

    @invariant()
    def jobs_add_up(self) -> None:
        """Per job: the model's slashed pool is the contract's; an ended job's payouts add up
        to what it held, exactly; honest trainers keep all their stake in an ended job. (A job
        is re-read when it may have changed: a running one, or an ended one after a claim.)"""
        for job, model in self.jobs.items():
            key = (len(model.claimed), model.refund_claimed)
            if self.checked.get(job) == key:
                continue
            assert self.chain.slashed_pool(job) == model.slashed
            if self.chain.status(job) not in (SETTLED, ABANDONED, CANCELLED):
                continue  # running: nothing else to add up yet
            info = self.info(job)
            assert info["slashedPool"] == model.slashed
            assert model.paid <= model.reward + model.slashed + model.forfeited
            if info["status"] in (SETTLED, ABANDONED):
                view = self.chain.view
                rewards = sum(view(self.m.functions.rewardOf(job, t)) for t in model.parts)
                refund = 0 if model.refund_claimed else info["ownerRefund"]
                pool = info["forfeitPool"]
                dust = pool % info["reveals"] if pool else 0
                assert rewards + refund + model.paid + model.burned + dust == (
                    model.reward + model.slashed + model.forfeited
                )
                assert info["ownerRefund"] <= model.reward
                assert not model.lie_pending  # no lie survives the end of a job
                each = model.stake * info["slashBps"] // (2 * 10_000)
                for t in model.parts:
                    p = self.chain.participant(job, t)
                    assert p["unavailableRounds"] <= info["pendingRound"], (job, t, p)
                    assert self.chain.reliability(t) == self.reliability.get(t, [0, 0, 0])
                    if t in self.honest:  # charged exactly its missed rounds, capped at stake
                        charged = min(model.stake, each * p["missedRounds"])
                        assert model.missed.get(t, 0) == charged, (job, t, p)
                    if t in self.honest and t not in model.claimed:
                        locked = p["lockedStake"]
                        assert locked == model.stake - charged, (job, t, locked)
                self.checked[job] = key
            elif info["status"] == CANCELLED:
                refund = 0 if model.refund_claimed else info["ownerRefund"]
                assert refund + model.paid == model.reward
                self.checked[job] = key

    @invariant()
    def honest_stake_is_never_lost(self) -> None:
        lies = {t for m in self.jobs.values() if m.lie_pending for t in m.parts}
        for t in self.honest:
            if t in self.vault and t not in lies:  # missed rounds are the only price
                assert self.vault[t] + self.missed_paid.get(t, 0) >= self.put_in.get(t, 0)
        # the fast storage read agrees with the contract's own view
        probe = sorted(self.vault)[len(self.checked) % len(self.vault)]
        assert self.chain.vault(probe)[:3] == self.chain.account(probe)


MarketMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,  # the same runs everywhere (test_every_path_was_taken relies on it)
    # Shrinking a failing run of this machine takes many minutes: report it unshrunk.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMarketMachine = MarketMachine.TestCase


def test_every_path_was_taken() -> None:
    """The runs above reached every path of the model (runs after TestMarketMachine)."""
    seen = MarketMachine.seen
    if not seen:
        import pytest

        pytest.skip("run together with TestMarketMachine")
    want = {
        "correct post",
        "lie posted",
        "lie corrected",
        "frivolous upheld",
        "forfeit",
        "abandon",
        "finalize",
        "claim",
        "refund",
        "reliability recorded",
    }
    assert want <= set(seen), str(dict(seen))
