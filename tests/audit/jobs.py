"""Building audited markets for the audit tests: jobs with per-round validation chunks, bonded
aggregators, challenge windows and disputes, played round by round on the embedded chain.

Only public interfaces: the market client, the aggregator's round driver, trainer clients and
`backend.core.valchunks` (the owner's and the verifier's services are not used here).
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount

from aggregator.round.driver import PendingRound, RoundDriver, RoundReport
from backend.chain.base import Chain
from backend.chain.embedded import embedded_chain
from backend.chain.market import (
    ROLE_AGGREGATOR,
    JobParams,
    MarketClient,
    RoundPost,
    vote_commitment,
)
from backend.core import codec
from backend.core.datasets import (
    Dataset,
    load_dataset,
    shard,
    split_train_validation_test,
    to_npz_bytes,
)
from backend.core.errors import Reason
from backend.core.jobspec import AggregationSpec, JobSpec, TrainingSpec
from backend.core.models import ModelSpec, build_model, get_weights
from backend.core.valchunks import MerkleTree, chunk_leaf, new_salts, split_chunks
from backend.storage import LocalStore, raw_cid, sha256_bytes
from trainer_client.adversaries import AdversarialClient
from trainer_client.client import TrainerClient

ETHER = 10**18
REWARD = 10 * ETHER + 7  # odd on purpose: integer remainders are accounted for
STAKE = ETHER
BOND = ETHER  # each job's aggregator bond
VERIFIERS = 4  # a challenger verifier plus a committee of 3


@dataclass
class Market:
    """One deployed market with its court, a store and the parties who stay across jobs."""

    chain: Chain
    market: MarketClient
    store: LocalStore
    owner: LocalAccount
    aggregator: LocalAccount
    verifiers: list[LocalAccount]

    def verifier(self, address: str) -> LocalAccount:
        return next(v for v in self.verifiers if v.address.lower() == address.lower())


def new_market(store_dir: Path) -> Market:
    chain = embedded_chain()
    market, _ = MarketClient.deploy(chain, chain.dev_account(0))
    owner = chain.new_funded_account(200 * ETHER)
    aggregator = chain.new_funded_account(10 * ETHER)
    market.register_role(aggregator, ROLE_AGGREGATOR, 5 * ETHER)
    verifiers = []
    for _ in range(VERIFIERS):
        v = chain.new_funded_account(3 * ETHER)
        market.register_verifier(v, ETHER)
        verifiers.append(v)
    return Market(chain, market, LocalStore(store_dir), owner, aggregator, verifiers)


@dataclass
class Job:
    """One job as its owner, trainers and aggregator play it."""

    m: Market
    job_id: int
    spec: JobSpec
    rounds: int
    challenge_window: int
    validation: Dataset
    test: Dataset
    clients: list[TrainerClient]
    driver: RoundDriver
    chunk_blobs: list[bytes]
    chunk_cids: list[str]
    salts: list[bytes]
    tree: MerkleTree
    reports: list[RoundReport] = field(default_factory=list)

    @property
    def market(self) -> MarketClient:
        return self.m.market

    @property
    def trainers(self) -> list[str]:
        return [c.address for c in self.clients]

    # -- rounds ------------------------------------------------------------------------------
    def train(self, round_: int) -> None:
        """Every trainer trains, commits, then reveals."""
        for client in self.clients:
            client.participate(self.job_id, round_)
        for client in self.clients:
            client.reveal(self.job_id, round_)

    def compute(self) -> PendingRound:
        return self.driver.compute()

    def post(self, pending: PendingRound | None = None) -> RoundReport:
        report = self.driver.post(pending or self.driver.compute())
        self.reports.append(report)
        return report

    def reveal_chunk(self, round_: int) -> None:
        """The owner publishes and reveals round `round_`'s validation chunk."""
        blob = self.chunk_blobs[round_ - 1]
        cid = self.m.store.put(blob)
        assert cid == self.chunk_cids[round_ - 1]
        self.market.reveal_validation_chunk(
            self.m.owner,
            self.job_id,
            round_,
            sha256_bytes(blob),
            cid,
            self.salts[round_ - 1],
            self.tree.proof(round_ - 1),
        )

    def wait_final(self) -> None:
        """Let the pending round's challenge window pass."""
        self.m.chain.advance_time(self.challenge_window + 1)

    def play(self, round_: int) -> RoundReport:
        """A whole honest round: train, post, reveal its chunk, wait until it is final."""
        self.train(round_)
        report = self.post()
        self.reveal_chunk(round_)
        self.wait_final()
        return report

    def settle(self) -> None:
        """Finalize, every trainer claims, the owner takes the refund."""
        self.market.finalize(self.m.owner, self.job_id)
        self.claim_all()

    def claim_all(self) -> None:
        for client in self.clients:
            self.market.claim(client.account, self.job_id)
        self.market.claim_refund(self.m.owner, self.job_id)

    def posted(self, round_: int) -> RoundPost:
        return next(p for p in self.market.round_posts(self.job_id) if p.round == round_)


def spec_for(data: Dataset, seed: int = 0) -> JobSpec:
    return JobSpec(
        name="digits audit",
        dataset="digits",
        model=ModelSpec(
            family="mlp",
            input_dim=int(data.x.shape[1]),
            num_classes=int(data.y.max()) + 1,
            hidden=[32],
            seed=seed,
        ),
        training=TrainingSpec(local_epochs=1, lr=0.1),
        aggregation=AggregationSpec(scoring="loss_gain", rule={"name": "consensus"}),
    )


def new_job(
    m: Market,
    *,
    trainers: int = 3,
    attackers: int = 0,
    rounds: int = 2,
    challenge_window: int = 0,
    seed: int = 0,
) -> Job:
    """Create a job (chunks committed by their Merkle root), register and join its trainers
    (the last `attackers` flip their updates' sign); the job starts when the last one joins."""
    data = load_dataset("digits")
    train, validation, test = split_train_validation_test(data, seed=seed)
    spec = spec_for(data, seed)
    spec_blob = spec.to_bytes()
    initial = codec.encode(get_weights(build_model(spec.model)))
    spec_cid, model_cid = m.store.put(spec_blob), m.store.put(initial)
    chunk_blobs = [to_npz_bytes(c) for c in split_chunks(validation, rounds)]
    chunk_cids = [raw_cid(b) for b in chunk_blobs]  # published only when revealed
    salts = new_salts(rounds)
    tree = MerkleTree(
        [
            chunk_leaf(r, sha256_bytes(b), cid, salt)
            for r, (b, cid, salt) in enumerate(
                zip(chunk_blobs, chunk_cids, salts, strict=True), start=1
            )
        ]
    )
    params = JobParams(
        aggregator=m.aggregator.address,
        stake_required=STAKE,
        rounds=rounds,
        min_trainers=trainers,
        max_trainers=trainers,
        spec_hash=sha256_bytes(spec_blob),
        spec_cid=spec_cid,
        initial_model_hash=sha256_bytes(initial),
        initial_model_cid=model_cid,
        validation_root=tree.root,
        challenge_window=challenge_window,
        aggregator_bond=BOND,
    )
    job_id, _ = m.market.create_job(m.owner, params, REWARD)
    clients: list[TrainerClient] = []
    for i, part in enumerate(shard(train, trainers, seed=seed)):
        acct = m.chain.new_funded_account(STAKE + 3 * ETHER)
        client_seed = seed * 100 + i
        if i >= trainers - attackers:
            client: TrainerClient = AdversarialClient(
                m.market, m.store, acct, part, attack="sign_flip", seed=client_seed
            )
        else:
            client = TrainerClient(m.market, m.store, acct, part, seed=client_seed)
        m.market.register(acct, STAKE + ETHER)  # a free ether: enough for a challenge bond
        m.market.join(acct, job_id)
        clients.append(client)
    driver = RoundDriver(m.market, m.store, m.aggregator, job_id, validation)
    return Job(
        m,
        job_id,
        spec,
        rounds,
        challenge_window,
        validation,
        test,
        clients,
        driver,
        chunk_blobs,
        chunk_cids,
        salts,
        tree,
    )


def flag_falsely(pending: PendingRound, victim: int) -> PendingRound:
    """The aggregator's lie: participant `victim` flagged as an outlier (score 0, slashed)."""
    outcomes = list(pending.outcome.outcomes)
    outcomes[victim] = dataclasses.replace(
        outcomes[victim], reason=Reason.OUTLIER, score=0.0, score_fp=0, detail="a lie"
    )
    return PendingRound(
        pending.round, pending.submissions, dataclasses.replace(pending.outcome, outcomes=outcomes)
    )


def dispute(
    job: Job, challenger: LocalAccount, round_: int, digest: bytes, vote: bytes
) -> tuple[int, list[str]]:
    """`challenger` challenges `round_` with `digest`; the drawn committee all vote `vote`
    (commit, then reveal) and the dispute is resolved. Returns (dispute id, members)."""
    market = job.market
    dispute_id, _ = market.challenge(challenger, job.job_id, round_, digest)
    members = [str(a) for a in market.dispute(dispute_id)["members"]]
    salts = {}
    for member in members:
        salts[member] = secrets.token_bytes(32)
        commitment = vote_commitment(vote, salts[member], member, dispute_id)
        market.commit_vote(job.m.verifier(member), dispute_id, commitment)
    for member in members:
        market.reveal_vote(job.m.verifier(member), dispute_id, vote, salts[member])
    market.resolve(job.m.owner, dispute_id)
    return dispute_id, members
