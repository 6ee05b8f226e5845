"""Hypothesis stateful test: random actors drive random sequences of every market operation.

After every step: the market's ETH balance equals Σ vault balances + Σ over jobs of
(reward + slashedPool − paid out), tracked in a Python model from the amounts actually sent and
received; vault balances and locks match the model; locked ≤ balance; nobody is paid twice;
only a job's aggregator can post; stake locked in an unsettled job can never be withdrawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contract_harness import (
    ABANDONED,
    CANCELLED,
    CREATED,
    ETH,
    FINISHED,
    MISSING,
    RUNNING,
    SETTLED,
    Chain,
    Update,
    commitment,
    decode_error,
    job_params,
    make_update,
    params_tuple,
    revert_data,
)
from eth_tester.exceptions import TransactionFailed
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from web3.logs import DISCARD

OWNERS = (0, 1)
AGGREGATOR = 2
TRAINERS = (3, 4, 5, 6, 7)
ACTORS = range(8)
CLAIMABLE = (SETTLED, ABANDONED, CANCELLED)


@dataclass
class JobModel:
    owner: str
    aggregator: str
    reward: int
    slashed: int = 0
    paid: int = 0
    parts: list[str] = field(default_factory=list)
    locked: dict[str, int] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)
    refund_claimed: bool = False
    updates: dict[str, Update] = field(default_factory=dict)


class MarketMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain = Chain(num_accounts=8)
        self.m = self.chain.market
        self.acc = self.chain.accounts
        self.vault: dict[str, int] = {}
        self.jobs: dict[int, JobModel] = {}

    # ------------------------------------------------------------------ plumbing
    def send(self, fn, sender: str, value: int = 0):
        """Send a transaction: (receipt, None) on success, (None, error name) on revert.
        Tracks the ETH the sender actually received (net of gas) for the payout model."""
        before = self.chain.balance(sender)
        try:
            h = fn.transact({"from": sender, "value": value})
        except TransactionFailed as exc:
            name, _ = decode_error(revert_data(exc))
            assert name not in ("Panic", "Error"), f"unexpected {name}"
            return None, name
        receipt = self.chain.w3.eth.get_transaction_receipt(h)
        assert receipt["status"] == 1
        received = (
            self.chain.balance(sender)
            - before
            + receipt["gasUsed"] * receipt["effectiveGasPrice"]
            + value
        )
        return receipt, received

    def logs(self, name: str, receipt) -> list[dict]:
        return [
            dict(e["args"]) for e in self.m.events[name]().process_receipt(receipt, errors=DISCARD)
        ]

    def status(self, job: int) -> int:
        return int(self.chain.job(job)["status"])

    def pick_job(self, i: int) -> int:
        ids = sorted(self.jobs)
        return ids[i % len(ids)]

    def pick_running(self, i: int) -> int:
        """Prefer a running job (keeps the round rules productive); else any job."""
        running = [j for j in sorted(self.jobs) if self.status(j) == RUNNING]
        return running[i % len(running)] if running else self.pick_job(i)

    def apply_slashes(self, job: int, receipt) -> None:
        for ev in self.logs("TrainerSlashed", receipt):
            t, amount = ev["trainer"], ev["amount"]
            self.vault[t] -= amount
            self.jobs[job].locked[t] -= amount
            self.jobs[job].slashed += amount

    @initialize(n=st.integers(2, 4), stake=st.sampled_from([0, 10**17 + 1, ETH]))
    def bootstrap(self, n: int, stake: int) -> None:
        """Start every example with registered trainers and one job they are joining."""
        for a in TRAINERS[:4]:
            self.register(a, 3 * ETH)
        self.create(0, 10**19 + 3, 2, n, stake, 777)
        for a in TRAINERS[:n]:
            self.join(a, 0)

    @precondition(lambda self: self.jobs)
    @rule(j=st.integers(0, 7), skip=st.integers(0, 3))
    def commit_all(self, j: int, skip: int) -> None:
        """Every participant but one (index ``skip``, if any) commits: drives rounds forward."""
        job = self.pick_running(j)
        for k, t in enumerate(self.jobs[job].parts):
            if k != skip:
                self.commit_to(job, t)

    @precondition(lambda self: self.jobs)
    @rule(j=st.integers(0, 7))
    def reveal_all(self, j: int) -> None:
        job = self.pick_running(j)
        info = self.chain.job(job)
        if info["status"] == RUNNING and self.chain.next_timestamp() < info["commitEnd"]:
            self.chain.at(info["commitEnd"])
        for t in self.jobs[job].parts:
            self.reveal_to(job, t, False)

    # ------------------------------------------------------------------ vault rules
    @rule(a=st.sampled_from(TRAINERS), amount=st.integers(1, 4 * ETH))
    def register(self, a: int, amount: int) -> None:
        addr = self.acc[a]
        receipt, res = self.send(self.m.functions.register(), addr, amount)
        if addr in self.vault:
            assert res == "AlreadyRegistered"
        else:
            assert receipt is not None, res
            self.vault[addr] = amount

    @rule(a=st.sampled_from(TRAINERS), amount=st.integers(1, 2 * ETH))
    def deposit(self, a: int, amount: int) -> None:
        addr = self.acc[a]
        receipt, res = self.send(self.m.functions.deposit(), addr, amount)
        if addr not in self.vault:
            assert res == "NotRegistered"
        else:
            assert receipt is not None, res
            self.vault[addr] += amount

    @rule(a=st.sampled_from(TRAINERS), frac=st.sampled_from([1, 2, 4]))
    def withdraw(self, a: int, frac: int) -> None:
        addr = self.acc[a]
        if addr not in self.vault:
            return
        balance, locked, _ = self.chain.account(addr)
        amount = balance // frac
        if amount == 0:
            return
        receipt, res = self.send(self.m.functions.withdraw(amount), addr)
        if amount > balance - locked:
            assert res == "InsufficientFreeStake", res  # locked stake is never withdrawable
        else:
            assert receipt is not None, res
            assert res == amount
            self.vault[addr] -= amount

    # ------------------------------------------------------------------ job rules
    @rule(
        o=st.sampled_from(OWNERS),
        reward=st.integers(1, 10**19),
        rounds=st.integers(1, 2),
        max_trainers=st.integers(2, 4),
        stake=st.sampled_from([0, 10**17 + 1, ETH]),
        slash_bps=st.sampled_from([0, 777, 10_000]),
    )
    @precondition(lambda self: len(self.jobs) < 4)
    def create(
        self, o: int, reward: int, rounds: int, max_trainers: int, stake: int, slash_bps: int
    ) -> None:
        owner = self.acc[o]
        job = int(self.m.functions.nextJobId().call())
        p = job_params(
            self.acc[AGGREGATOR],
            rounds=rounds,
            minTrainers=2,
            maxTrainers=max_trainers,
            stakeRequired=stake,
            slashBps=slash_bps,
        )
        receipt, res = self.send(self.m.functions.createJob(params_tuple(p)), owner, reward)
        assert receipt is not None, res
        self.jobs[job] = JobModel(owner, self.acc[AGGREGATOR], reward)

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(TRAINERS), j=st.integers(0, 7))
    def join(self, a: int, j: int) -> None:
        job, addr = self.pick_job(j), self.acc[a]
        stake = self.chain.job(job)["stakeRequired"]
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
        model = self.jobs[job]
        model.parts.append(addr)
        model.locked[addr] = stake

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ACTORS), j=st.integers(0, 7))
    def start(self, a: int, j: int) -> None:
        job = self.pick_job(j)
        _receipt, res = self.send(self.m.functions.start(job), self.acc[a])
        if self.acc[a] != self.jobs[job].owner:
            assert res == "NotOwner"

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ACTORS), j=st.integers(0, 7))
    def cancel(self, a: int, j: int) -> None:
        job = self.pick_job(j)
        was = self.status(job)
        _receipt, res = self.send(self.m.functions.cancel(job), self.acc[a])
        if was != CREATED:
            assert res == "WrongStatus"

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(TRAINERS), j=st.integers(0, 7))
    def commit(self, a: int, j: int) -> None:
        self.commit_to(self.pick_job(j), self.acc[a])

    def commit_to(self, job: int, addr: str) -> None:
        rnd = self.chain.job(job)["currentRound"]
        u = make_update(addr, job, rnd)
        c = commitment(u.content_hash, u.cid, u.salt, addr, job, rnd)
        receipt, res = self.send(self.m.functions.commit(job, c), addr)
        if receipt is not None:
            self.jobs[job].updates[addr] = u
        elif addr not in self.jobs[job].parts:
            assert res == "NotParticipant"

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(TRAINERS), j=st.integers(0, 7), tamper=st.booleans())
    def reveal(self, a: int, j: int, tamper: bool) -> None:
        self.reveal_to(self.pick_job(j), self.acc[a], tamper)

    def reveal_to(self, job: int, addr: str, tamper: bool) -> None:
        u = self.jobs[job].updates.get(addr)
        if u is None:
            u = make_update(addr, job, 0)
        cid = u.cid + ("x" if tamper else "")
        receipt, res = self.send(self.m.functions.reveal(job, u.content_hash, cid, u.salt), addr)
        if tamper and receipt is None:
            assert res != "Panic"
        if tamper:
            assert receipt is None  # a tampered opening never matches

    @precondition(lambda self: self.jobs)
    @rule(
        a=st.sampled_from([AGGREGATOR, AGGREGATOR, 0, 3]),
        j=st.integers(0, 7),
        seed=st.integers(0, 2**32),
    )
    def post(self, a: int, j: int, seed: int) -> None:
        job, sender = self.pick_running(j), self.acc[a]
        info = self.chain.job(job)
        rnd = info["currentRound"]
        early = self.chain.next_timestamp() < info["revealEnd"]
        if info["status"] == RUNNING and early and sender == self.jobs[job].aggregator:
            if info["commits"] == 0 or seed % 4 == 0:
                return  # let the round play out first most of the time
            self.chain.at(info["revealEnd"])
        parts = self.m.functions.participantsOf(job).call()
        scores, reasons = [], []
        for k, t in enumerate(parts):
            revealed = self.chain.participant(job, t)["lastRevealRound"] == rnd and rnd > 0
            r = (seed >> (3 * k)) % 8
            if not revealed:
                scores.append(0)
                reasons.append(MISSING)
            elif r < 5:
                scores.append(1 + (seed >> k) % 3_000_000)
                reasons.append(0)
            else:
                scores.append(0)
                reasons.append([2, 3, 8][r - 5])
        fn = self.m.functions.postRound(job, rnd, b"\x05" * 32, "bafy-m", scores, reasons)
        receipt, res = self.send(fn, sender)
        if sender != self.jobs[job].aggregator:
            assert res == "NotAggregator"  # only the job's aggregator can post
        elif receipt is not None:
            self.apply_slashes(job, receipt)

    @precondition(lambda self: self.jobs)
    @rule(seconds=st.sampled_from([30, 60, 120, 350]))
    def wait(self, seconds: int) -> None:
        self.chain.at(self.chain.next_timestamp() + seconds)

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ACTORS), j=st.integers(0, 7), coin=st.integers(0, 2))
    def abandon(self, a: int, j: int, coin: int) -> None:
        if coin:
            return  # abandoning kills a job: keep it rarer than the other steps
        job = self.pick_job(j)
        info = self.chain.job(job)
        if info["status"] == RUNNING and self.chain.next_timestamp() <= info["postDeadline"]:
            self.chain.at(info["postDeadline"] + 1)
        receipt, res = self.send(self.m.functions.abandon(job), self.acc[a])
        assert (receipt is not None) == (info["status"] == RUNNING), res

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(ACTORS), j=st.integers(0, 7))
    def finalize(self, a: int, j: int) -> None:
        job = self.pick_job(j)
        was = self.status(job)
        receipt, res = self.send(self.m.functions.finalize(job), self.acc[a])
        assert (receipt is not None) == (was == FINISHED), res

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from((*TRAINERS, 0)), j=st.integers(0, 7))
    def claim(self, a: int, j: int) -> None:
        job, addr = self.pick_job(j), self.acc[a]
        model = self.jobs[job]
        was = self.status(job)
        expected = self.m.functions.rewardOf(job, addr).call()
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
            model.claimed.add(addr)
            model.paid += res
            model.locked[addr] = 0

    @precondition(lambda self: self.jobs)
    @rule(a=st.sampled_from(OWNERS), j=st.integers(0, 7))
    def claim_refund(self, a: int, j: int) -> None:
        job, addr = self.pick_job(j), self.acc[a]
        model = self.jobs[job]
        was = self.status(job)
        receipt, res = self.send(self.m.functions.claimRefund(job), addr)
        if addr != model.owner:
            assert res == "NotOwner"
        elif was not in CLAIMABLE:
            assert res == "WrongStatus"
        elif model.refund_claimed:
            assert res == "AlreadyClaimed"
        else:
            assert receipt is not None, res
            assert res == self.chain.job(job)["ownerRefund"]
            model.refund_claimed = True
            model.paid += res

    # ------------------------------------------------------------------ invariants
    @invariant()
    def eth_is_conserved(self) -> None:
        held = self.chain.balance(self.m.address)
        jobs = sum(j.reward + j.slashed - j.paid for j in self.jobs.values())
        assert held == sum(self.vault.values()) + jobs
        for job, model in self.jobs.items():
            info = self.chain.job(job)
            assert info["slashedPool"] == model.slashed
            assert model.paid <= model.reward + model.slashed
            if info["status"] in (SETTLED, ABANDONED):
                rewards = sum(self.m.functions.rewardOf(job, t).call() for t in model.parts)
                # unclaimed rewards + already paid + refund == reward + slashed, exactly
                refund = 0 if model.refund_claimed else info["ownerRefund"]
                assert rewards + refund + model.paid == model.reward + model.slashed

    @invariant()
    def stake_matches_model(self) -> None:
        for addr, balance in self.vault.items():
            b, locked, registered = self.chain.account(addr)
            assert registered and b == balance >= 0
            want_locked = sum(j.locked.get(addr, 0) for j in self.jobs.values())
            assert locked == want_locked <= b


MarketMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMarketMachine = MarketMachine.TestCase
