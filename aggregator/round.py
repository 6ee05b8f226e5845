"""One round's result as a pure function of public inputs — and the I/O driver around it.

`compute_round` is what makes a round re-verifiable: given the global model, the submissions
(raw blobs as fetched), the validation split and the job's recorded settings, it returns the
reasons, scores and next model bytes, identically every time. `RoundDriver` does the I/O:
reads the chain, fetches and verifies blobs, stores the next model and posts one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from eth_account.signers.local import LocalAccount

from aggregator.copies import detect_copies
from aggregator.fixedpoint import to_fixed_point
from aggregator.outer import OuterOptimizer, outer_step, weighted_mean
from aggregator.robust import OutlierRule, detect_outliers
from aggregator.scoring import leave_one_out, loss_gain_alone, shapley_monte_carlo
from backend import codec
from backend.codec import Template, Tensors
from backend.datasets import Dataset
from backend.errors import ContentMismatch, ContentNotFound, Reason, UpdateRejected
from backend.jobspec import JobSpec
from backend.market import MarketClient, Phase
from backend.models import evaluate, template_of
from backend.storage import ContentStore, fetch_verified, sha256_bytes


@dataclass(frozen=True)
class Submission:
    """A participant's input to a round, as the aggregator (or an auditor) obtained it."""

    trainer: str
    blob: bytes | None = None  # None: not revealed, or not obtainable
    reason: Reason = Reason.ACCEPTED  # a reason found while obtaining it (missing, unavailable…)
    detail: str = ""
    commit_order: int = 0  # position of its commit on chain (copy detection: earlier = original)


@dataclass(frozen=True)
class TrainerOutcome:
    trainer: str
    reason: Reason
    detail: str
    score: float
    score_fp: int
    update_norm: float


@dataclass
class RoundOutcome:
    outcomes: list[TrainerOutcome]  # in the order of the submissions given (participant order)
    next_weights: Tensors
    next_model_blob: bytes
    loss_before: float
    loss_after: float
    accuracy_after: float
    accepted_updates: np.ndarray  # (k, d) float32, for replay detection in later rounds
    momentum: np.ndarray | None = None

    @property
    def scores_fp(self) -> list[int]:
        return [o.score_fp for o in self.outcomes]

    @property
    def reasons(self) -> list[int]:
        return [int(o.reason) for o in self.outcomes]


def rule_of(spec: JobSpec) -> OutlierRule:
    return OutlierRule(**spec.aggregation.rule.model_dump())


def compute_round(
    spec: JobSpec,
    global_weights: Tensors,
    submissions: Sequence[Submission],
    validation: Dataset,
    previous_updates: np.ndarray | None = None,
    momentum: np.ndarray | None = None,
) -> RoundOutcome:
    """Validate, detect copies and outliers, score, aggregate. Deterministic; no I/O."""
    agg = spec.aggregation
    template: Template = template_of(spec.model)
    w = template.flatten(global_weights, np.float64)
    n = len(submissions)
    reasons = [s.reason for s in submissions]
    details = [s.detail for s in submissions]
    rows: list[np.ndarray] = []
    row_of: dict[int, int] = {}
    # Decoding and the checks run in trainer-address order (a fixed, public order).
    for i in sorted(range(n), key=lambda i: submissions[i].trainer.lower()):
        sub = submissions[i]
        if sub.reason != Reason.ACCEPTED:
            continue
        if sub.blob is None:
            reasons[i], details[i] = Reason.MISSING, "no update revealed this round"
            continue
        try:
            tensors = codec.decode(sub.blob, template, max_bytes=agg.max_update_bytes)
        except UpdateRejected as rej:
            reasons[i], details[i] = rej.reason, rej.detail
            continue
        row_of[i] = len(rows)
        rows.append(template.flatten(tensors, np.float32))
    valid = sorted(row_of, key=lambda i: submissions[i].trainer.lower())
    x = np.stack(rows) if rows else np.zeros((0, template.size), np.float32)
    norms = np.zeros(n)
    for i in valid:
        norms[i] = float(np.linalg.norm(x[row_of[i]].astype(np.float64)))

    # Copies and free riders, in commit order: the earlier commit counts as the original.
    if valid:
        by_commit = sorted(
            valid, key=lambda i: (submissions[i].commit_order, submissions[i].trainer.lower())
        )
        copy_reasons = detect_copies(
            x[[row_of[i] for i in by_commit]],
            previous_updates,
            rel_tol=agg.copy_rel_tol,
            scale_cos=agg.copy_scale_cos,
            zero_ratio=agg.zero_ratio,
        )
        for i, r in zip(by_commit, copy_reasons, strict=True):
            if int(r) != 0:
                reasons[i] = Reason(int(r))
                details[i] = {
                    9: "copy or scaled copy of another update this round",
                    10: "replay of an update from an earlier round",
                    11: "near-zero update (free rider)",
                }[int(r)]
    # Outliers among the remaining candidates, by the job's robust rule.
    candidates = [i for i in valid if reasons[i] == Reason.ACCEPTED]
    if candidates:
        flags = detect_outliers(x[[row_of[i] for i in candidates]], rule_of(spec))
        for i, flagged in zip(candidates, flags, strict=True):
            if flagged:
                reasons[i] = Reason.OUTLIER
                details[i] = f"flagged by the {agg.rule.name} rule (norm {norms[i]:.4g})"
    accepted = [i for i in candidates if reasons[i] == Reason.ACCEPTED]

    base_loss, _ = evaluate(spec.model, global_weights, validation.x, validation.y)
    opt = OuterOptimizer(kind=agg.outer, lr=agg.server_lr, momentum=agg.momentum)

    def loss_of(delta: np.ndarray) -> float:
        w_new, _ = outer_step(w, delta, opt, momentum)
        loss, _ = evaluate(spec.model, template.unflatten(w_new), validation.x, validation.y)
        return loss if np.isfinite(loss) else 1e9

    scores = np.zeros(n)
    if accepted:
        acc_x = x[[row_of[i] for i in accepted]]
        if agg.scoring == "loss_gain":
            losses = np.array([loss_of(acc_x[k].astype(np.float64)) for k in range(len(accepted))])
            s = loss_gain_alone(base_loss, losses)
        else:

            def value(mask: np.ndarray) -> float:
                if not mask.any():
                    return 0.0
                mean = weighted_mean(acc_x, mask.astype(np.float64))
                return base_loss - loss_of(mean)

            if agg.scoring == "loo":
                s = leave_one_out(value, len(accepted))
            else:
                s = shapley_monte_carlo(
                    value, len(accepted), permutations=agg.shapley_permutations, seed=agg.seed
                )
        for k, i in enumerate(accepted):
            scores[i] = float(s[k])
        acc_delta = weighted_mean(acc_x, np.ones(len(accepted)))
    else:
        acc_delta = np.zeros(template.size)
    w_next, momentum_next = outer_step(w, acc_delta, opt, momentum)
    next_weights = template.unflatten(w_next)
    loss_after, acc_after = evaluate(spec.model, next_weights, validation.x, validation.y)
    fixed = to_fixed_point(scores)
    outcomes = [
        TrainerOutcome(
            s.trainer, reasons[i], details[i], float(scores[i]), int(fixed[i]), float(norms[i])
        )
        for i, s in enumerate(submissions)
    ]
    return RoundOutcome(
        outcomes,
        next_weights,
        codec.encode(next_weights),
        base_loss,
        loss_after,
        acc_after,
        x[[row_of[i] for i in valid]] if valid else x,
        momentum_next,
    )


@dataclass
class RoundReport:
    job_id: int
    round: int
    outcome: RoundOutcome
    model_cid: str
    model_hash: bytes
    gas_used: int
    tx_hash: str


@dataclass
class RoundDriver:
    """Runs one job's rounds for its aggregator: gather → compute_round → store → post."""

    market: MarketClient
    store: ContentStore
    account: LocalAccount
    job_id: int
    validation: Dataset
    spec: JobSpec = field(init=False)
    history: list[np.ndarray] = field(default_factory=list)
    momentum: np.ndarray | None = None

    def __post_init__(self) -> None:
        spec_hash, spec_cid = self.market.spec_pointer(self.job_id)
        self.spec = JobSpec.from_bytes(fetch_verified(self.store, spec_cid, spec_hash))

    def ready(self) -> bool:
        """Whether the current round's reveal phase is over and its post is due."""
        return self.market.phase_of(self.job_id) == Phase.AWAITING_POST

    def gather(self, round_: int) -> list[Submission]:
        """Fetch and verify every revealed update; map each failure to its reason code."""
        participants = self.market.participants(self.job_id)
        reveals = {r.trainer: r for r in self.market.reveals(self.job_id, round_)}
        commit_order = {
            t: k for k, (t, _, _) in enumerate(self.market.commits(self.job_id, round_))
        }
        out: list[Submission] = []
        for trainer in participants:
            rev = reveals.get(trainer)
            order = commit_order.get(trainer, len(commit_order))
            if rev is None:
                out.append(Submission(trainer, None, Reason.MISSING, "no reveal this round", order))
                continue
            try:
                blob = fetch_verified(self.store, rev.cid, rev.content_hash)
            except ContentNotFound as exc:
                out.append(Submission(trainer, None, Reason.UNAVAILABLE, str(exc), order))
                continue
            except ContentMismatch as exc:
                out.append(Submission(trainer, None, Reason.HASH_MISMATCH, str(exc), order))
                continue
            out.append(Submission(trainer, blob, Reason.ACCEPTED, "", order))
        return out

    def global_weights(self) -> Tensors:
        model_hash, model_cid = self.market.current_model(self.job_id)
        blob = fetch_verified(self.store, model_cid, model_hash)
        return codec.decode(blob, template_of(self.spec.model))

    def run_round(self) -> RoundReport:
        job = self.market.job(self.job_id)
        round_ = int(job.currentRound)
        submissions = self.gather(round_)
        previous = np.concatenate(self.history[-3:]) if self.history else None
        outcome = compute_round(
            self.spec, self.global_weights(), submissions, self.validation, previous, self.momentum
        )
        cid = self.store.put(outcome.next_model_blob)
        model_hash = sha256_bytes(outcome.next_model_blob)
        result = self.market.post_round(
            self.account, self.job_id, round_, model_hash, cid, outcome.scores_fp, outcome.reasons
        )
        self.history.append(outcome.accepted_updates)
        self.momentum = outcome.momentum
        return RoundReport(
            self.job_id, round_, outcome, cid, model_hash, result.gas_used, result.tx_hash
        )
