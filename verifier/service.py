"""The verifier service: one `step()` checks every pending round whose chunk is public, challenges
a mismatch, and does whatever its committee seats need next (commit, reveal, resolve, correct).
`serve()` repeats it. Every decision is recomputed from the chain on each pass, and the journal
holds only what the chain cannot give back (vote salts), so the service is restart-safe."""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount

from backend.audit.verify import verify_round
from backend.chain.market import ROLE_VERIFIER, MarketClient, RoundPost, vote_commitment
from backend.core.errors import FedMarketError
from backend.core.jobstatus import JobStatus
from backend.storage import ContentStore
from verifier.journal import VerifierJournal, Vote

log = logging.getLogger("fedmarket.verifier")

# DisputeCourt states.
VOTING, UPHELD, OVERTURNED, CORRECTED, NO_DECISION, LAPSED = 1, 2, 3, 4, 5, 6
OUTCOMES = {
    UPHELD: "upheld",
    OVERTURNED: "overturned",
    CORRECTED: "overturned",
    NO_DECISION: "no decision",
}


@dataclass(frozen=True)
class Action:
    """What one step did, for logs and tests."""

    kind: str  # checked | challenged | committed | revealed | resolved | corrected | rejoined
    job_id: int
    round: int
    detail: str = ""


class RoundCheck(Protocol):
    """What `verify_round` gives back: the recomputed result and its digest."""

    digest: bytes
    matches: bool
    model_hash: bytes
    model_blob: bytes
    scores: list[int]
    reasons: list[int]


Verify = Callable[[MarketClient, ContentStore, int, int], Any]


class VerifierService:
    """One verifier account watching one market."""

    def __init__(
        self,
        market: MarketClient,
        store: ContentStore,
        account: LocalAccount,
        journal: VerifierJournal,
        *,
        challenge: bool = True,
        verify: Verify = verify_round,
    ) -> None:
        self.market = market
        self.store = store
        self.account = account
        self.journal = journal
        self.challenge = challenge
        self.verify = verify
        self._checks: dict[tuple[int, int], Any] = {}

    @property
    def address(self) -> str:
        return str(self.account.address)

    @functools.cached_property
    def _vote_bond(self) -> int:
        """The court's vote bond (immutable: read once)."""
        return self.market.court_params()["vote_bond"]

    # -- the loop ---------------------------------------------------------------------------
    def step(self) -> list[Action]:
        """One pass: back into the committee pool if dropped, then pending rounds and open
        disputes."""
        actions = self.stay_in_pool()
        actions += self.watch_rounds()
        actions += self.serve_disputes()
        return actions

    def stay_in_pool(self) -> list[Action]:
        """Rejoin the committee pool after being dropped from it (a missed vote, say, while
        the node was down), once there is free stake for its bond again. Serving means
        offering to sit on committees; `fedmarket verifier leave` while not serving leaves
        for good."""
        if self.market.in_pool(self.address):  # the usual case: one view per pass
            return []
        if self.market.roles_of(self.address) & ROLE_VERIFIER == 0:
            return []
        acct = self.market.account_of(self.address)
        if acct["balance"] - acct["locked"] < self._vote_bond:
            return []
        self.market.join_pool(self.account)
        return [Action("rejoined", 0, 0, "the committee pool")]

    def serve(self, poll_s: float = 2.0, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            try:
                for action in self.step():
                    log.info(
                        "%s job %d round %d %s",
                        action.kind,
                        action.job_id,
                        action.round,
                        action.detail,
                    )
            except FedMarketError as exc:  # a node or store outage: try again next pass
                log.warning("verifier pass failed: %s", exc)
            time.sleep(poll_s)

    # -- rounds -----------------------------------------------------------------------------
    def check(self, job_id: int, round_: int) -> Any:
        """The recomputed result of a round (cached for this process)."""
        key = (job_id, round_)
        if key not in self._checks:
            self._checks[key] = self.verify(self.market, self.store, job_id, round_)
            self.journal.checked[f"{job_id}:{round_}"] = self._checks[key].digest.hex()
            self.journal.save()
        return self._checks[key]

    def watch_rounds(self) -> list[Action]:
        """Check each challengeable round once; challenge a mismatch (if allowed to)."""
        actions: list[Action] = []
        now = self.market.chain.now()
        for job_id in range(1, self.market.next_job_id()):
            job = self.market.job(job_id)
            round_ = int(job.pendingRound)
            if not self._challengeable(job, now) or f"{job_id}:{round_}" in self.journal.checked:
                continue
            result = self.check(job_id, round_)
            verdict = "reproduces" if result.matches else "does NOT reproduce"
            actions.append(Action("checked", job_id, round_, verdict))
            if not result.matches and self.challenge and self._may_challenge(job):
                actions.append(self.challenge_round(job_id, round_, result.digest))
        return actions

    @staticmethod
    def _challengeable(job: Any, now: int) -> bool:
        status = job.status_enum
        return (
            status in (JobStatus.RUNNING, JobStatus.FINISHED)
            and int(job.pendingRound) != 0
            and int(job.finalAt) != 0
            and now <= int(job.finalAt)
            and not job.disputeOpen
        )

    def _may_challenge(self, job: Any) -> bool:
        me = self.address.lower()
        return me not in (str(job.owner).lower(), str(job.aggregator).lower())

    def challenge_round(self, job_id: int, round_: int, digest: bytes) -> Action:
        """Challenge a round with `digest` (normally the one this verifier computed)."""
        dispute_id, _ = self.market.challenge(self.account, job_id, round_, digest)
        self.journal.challenged[f"{job_id}:{round_}"] = dispute_id
        self.journal.save()
        return Action("challenged", job_id, round_, f"dispute {dispute_id}")

    # -- disputes ---------------------------------------------------------------------------
    def serve_disputes(self) -> list[Action]:
        """Take the next due step of every dispute this verifier sits on or started."""
        actions: list[Action] = []
        for log_entry in self.market.court_logs("DisputeOpened"):
            a = log_entry["args"]
            dispute_id = int(a["disputeId"])
            members = [str(m).lower() for m in a["members"]]
            mine = self.address.lower() in members or str(a["challenger"]).lower() == (
                self.address.lower()
            )
            if mine:
                action = self.advance(dispute_id)
                if action is not None:
                    actions.append(action)
        return actions

    def advance(self, dispute_id: int) -> Action | None:
        """Do the one step dispute `dispute_id` needs from this verifier now, if any."""
        d = self.market.dispute(dispute_id)
        job_id, round_, state = int(d["jobId"]), int(d["round"]), int(d["state"])
        member = self.address.lower() in [str(m).lower() for m in d["members"]]
        now = self.market.chain.now()
        if state == VOTING:
            committed = member and self.market.has_committed(dispute_id, self.address)
            if member and not committed and now < int(d["commitEnd"]):
                return self._commit(dispute_id, job_id, round_)
            if committed and self._may_reveal(dispute_id, d, now):
                return self._reveal(dispute_id, job_id, round_)
            if int(d["reveals"]) == len(d["members"]) or now >= int(d["revealEnd"]):
                self.market.resolve(self.account, dispute_id)
                state = int(self.market.dispute(dispute_id)["state"])
                return Action("resolved", job_id, round_, OUTCOMES.get(state, str(state)))
            return None
        if state == OVERTURNED:
            if now > int(d["correctBy"]):  # nobody could post the winning result: close it
                self.market.lapse(self.account, dispute_id)
                return Action("lapsed", job_id, round_, f"dispute {dispute_id}")
            return self._correct(dispute_id, job_id, round_, bytes(d["winning"]))
        return None

    def _commit(self, dispute_id: int, job_id: int, round_: int) -> Action:
        digest = self.check(job_id, round_).digest
        vote = self.journal.votes.get(str(dispute_id))
        if vote is None:  # the salt is saved before the commitment is sent
            vote = Vote(digest.hex(), secrets.token_bytes(32).hex())
            self.journal.votes[str(dispute_id)] = vote
            self.journal.save()
        commitment = vote_commitment(
            bytes.fromhex(vote.digest), bytes.fromhex(vote.salt), self.address, dispute_id
        )
        self.market.commit_vote(self.account, dispute_id, commitment)
        vote.committed = True
        self.journal.save()
        return Action("committed", job_id, round_, f"dispute {dispute_id}")

    def _may_reveal(self, dispute_id: int, d: dict[str, Any], now: int) -> bool:
        if self.market.vote_of(dispute_id, self.address) != bytes(32):
            return False
        everyone = int(d["commits"]) == len(d["members"])
        return (everyone or now >= int(d["commitEnd"])) and now < int(d["revealEnd"])

    def _reveal(self, dispute_id: int, job_id: int, round_: int) -> Action | None:
        vote = self.journal.votes.get(str(dispute_id))
        if vote is None:
            log.error("dispute %d: committed, but the journal lost the salt", dispute_id)
            return None
        self.market.reveal_vote(
            self.account, dispute_id, bytes.fromhex(vote.digest), bytes.fromhex(vote.salt)
        )
        vote.revealed = True
        self.journal.save()
        return Action("revealed", job_id, round_, f"dispute {dispute_id}: 0x{vote.digest[:12]}")

    def _correct(self, dispute_id: int, job_id: int, round_: int, winning: bytes) -> Action | None:
        result = self.check(job_id, round_)
        if result.digest != winning:
            return None  # the majority computed something else: leave it to them
        model_cid = self.store.put(result.model_blob)
        fix = RoundPost(
            round_, result.model_hash, model_cid, list(result.scores), list(result.reasons), 0, ""
        )
        posted = next(p for p in self.market.round_posts(job_id) if p.round == round_)
        self.market.post_correction(self.account, dispute_id, fix, posted)
        self.journal.corrected.append(dispute_id)
        self.journal.save()
        return Action("corrected", job_id, round_, f"dispute {dispute_id}")
