"""One round's result as a pure function of public inputs — and the I/O driver around it.

`compute_round` is what makes a round re-verifiable: given the global model, the submissions
(raw blobs as fetched), the validation split and the job's recorded settings, it returns the
reasons, scores and next model bytes, identically every time. `RoundDriver` does the I/O:
reads the chain, fetches and verifies blobs, stores the next model and posts one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from eth_account.signers.local import LocalAccount

from aggregator.rules.copies import detect_copies
from aggregator.rules.fixedpoint import to_fixed_point
from aggregator.rules.outer import OuterOptimizer, outer_step, weighted_mean
from aggregator.rules.robust import OutlierRule, screen_updates
from aggregator.rules.scoring import leave_one_out, loss_gain_alone, shapley_monte_carlo
from backend.chain.market import MarketClient, Phase, Reveal, RoundPost
from backend.core import codec
from backend.core.codec import Template, Tensors
from backend.core.compression import decode_update
from backend.core.datasets import Dataset
from backend.core.errors import (
    ContentMismatch,
    ContentNotFound,
    FedMarketError,
    Reason,
    StorageUnavailable,
    UpdateRejected,
)
from backend.core.jobspec import JobSpec
from backend.core.models import evaluate, template_of
from backend.core.training import pseudo_gradient, train_local
from backend.protocol.fetch import fetch_job_spec, fetch_weights
from backend.storage.stores import ContentStore, fetch_verified, sha256_bytes

log = logging.getLogger("fedmarket.aggregator")


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


def _low_outlier_bar(values: np.ndarray, k: float = 3.0) -> float:
    """median − k·σ̂, with σ̂ from the values ABOVE the median (1.4826 × their median distance).

    Under an honest majority the upper half is honest, so σ̂ is the honest scatter even when
    up to half the values are attackers clustered low (a symmetric MAD would widen with them).
    """
    med = float(np.median(values))
    upper = values[values >= med] - med
    sigma = 1.4826 * float(np.median(upper)) if upper.size else 0.0
    return med - k * sigma


def rule_of(spec: JobSpec) -> OutlierRule:
    return OutlierRule(**spec.aggregation.rule.model_dump(exclude={"harm_ratio", "ref_cos_ratio"}))


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
            tensors = decode_update(sub.blob, template, spec.codec, agg.max_update_bytes)
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
    # Outliers among the remaining candidates, by the job's robust rule. Only evidence is
    # flagged (slashable); an update a selection-only rule (Multi-Krum) merely did not select
    # is held out: not aggregated, score 0, but reason ACCEPTED (not slashed).
    candidates = [i for i in valid if reasons[i] == Reason.ACCEPTED]
    held_out: list[int] = []
    if candidates:
        verdict = screen_updates(x[[row_of[i] for i in candidates]], rule_of(spec))
        for k, i in enumerate(candidates):
            if verdict.flagged[k]:
                reasons[i] = Reason.OUTLIER
                details[i] = f"flagged by the {agg.rule.name} rule (norm {norms[i]:.4g})"
            elif verdict.excluded[k]:
                held_out.append(i)
                details[i] = (
                    f"not selected by the {agg.rule.name} rule: not aggregated, not flagged"
                )
    accepted = [i for i in candidates if reasons[i] == Reason.ACCEPTED and i not in held_out]

    # Reference direction (as in FLTrust): one pass of the job's own local training on the
    # validation split. Honest updates, even from skewed shards, keep a clearly positive cosine
    # to it; label-flipped, sign-flipped and noise updates do not. Relative to the median
    # update's cosine, so no absolute threshold has to fit every model and dataset.
    ref_ratio = agg.rule.ref_cos_ratio
    if agg.rule.name == "consensus" and ref_ratio > 0 and len(accepted) >= 3:
        w_ref, _ = train_local(spec.model, global_weights, validation, spec.training, seed=agg.seed)
        ref = template.flatten(pseudo_gradient(global_weights, w_ref), np.float64)
        ref_norm = float(np.linalg.norm(ref))
        rows_acc = x[[row_of[i] for i in accepted]].astype(np.float64)
        row_n = np.linalg.norm(rows_acc, axis=1)
        cos_ref = np.divide(
            rows_acc @ ref,
            row_n * ref_norm,
            out=np.zeros(len(accepted)),
            where=row_n * ref_norm > 0,
        )
        median_cos = float(np.median(cos_ref))
        # Near convergence honest updates scatter around the reference; only an update that is
        # both far below the median and a robust outlier (3 sigma) is flagged.
        bar = min(ref_ratio * median_cos, _low_outlier_bar(cos_ref))
        if median_cos > 0:
            for i, c in zip(accepted, cos_ref, strict=True):
                if c < bar:
                    reasons[i] = Reason.OUTLIER
                    details[i] = (
                        f"off the reference direction: cosine {c:.3f} < {ref_ratio:g} x "
                        f"the median {median_cos:.3f}"
                    )
            accepted = [i for i in accepted if reasons[i] == Reason.ACCEPTED]

    base_loss, _ = evaluate(spec.model, global_weights, validation.x, validation.y)
    opt = OuterOptimizer(kind=agg.outer, lr=agg.server_lr, momentum=agg.momentum)

    def loss_of(delta: np.ndarray) -> float:
        w_new, _ = outer_step(w, delta, opt, momentum)
        loss, _ = evaluate(spec.model, template.unflatten(w_new), validation.x, validation.y)
        return loss if np.isfinite(loss) else 1e9

    # Validation loss of each surviving update applied alone: the loss-gain score, and the
    # harm test — an update that hurts the validation loss more than the median accepted update
    # helps it is poisoning (sign flips of any scale, label flips), not an unlucky shard.
    # Each update is applied at its share of the aggregate (Δ_i / k), against the step the
    # outer optimizer takes anyway (momentum only): applied at full weight, one non-IID shard's
    # update overshoots and looks harmful when it is not.
    share = 1.0 / max(len(accepted), 1)
    # The consensus rule clips large norms to max_norm_ratio x the median instead of flagging
    # them: a large update is not proof of cheating, but it must not dominate the aggregate.
    clip = {i: 1.0 for i in accepted}
    if agg.rule.name == "consensus" and len(accepted) >= 3:
        bound = agg.rule.max_norm_ratio * float(np.median([norms[i] for i in accepted]))
        clip = {i: (min(1.0, bound / norms[i]) if norms[i] > 0 else 1.0) for i in accepted}
    ref_loss = loss_of(np.zeros(template.size)) if momentum is not None else base_loss
    # Held-out updates are tested too: harm is evidence whether or not the rule selected them.
    loss_alone = {
        i: loss_of(share * clip.get(i, 1.0) * x[row_of[i]].astype(np.float64))
        for i in accepted + held_out
    }
    harm_ratio = agg.rule.harm_ratio
    if harm_ratio > 0 and len(accepted) >= 3:
        gains = np.array([ref_loss - loss_alone[i] for i in accepted])
        helpful = gains[gains > 0]
        if helpful.size:
            # ...and a robust outlier among this round's gains (3 sigma below their median).
            # The bar comes from the aggregated updates only, so holding some out of the
            # aggregate does not move it.
            bar = min(-harm_ratio * float(np.median(helpful)), _low_outlier_bar(gains))
            for i in accepted + held_out:
                g = ref_loss - loss_alone[i]
                if g < bar:
                    reasons[i] = Reason.OUTLIER
                    details[i] = (
                        f"harmful: alone it raises the validation loss by {-g:.4g}, "
                        f"more than {harm_ratio:g}x the median gain {-bar / harm_ratio:.4g}"
                    )
            accepted = [i for i in accepted if reasons[i] == Reason.ACCEPTED]

    scores = np.zeros(n)
    if accepted:
        acc_x = x[[row_of[i] for i in accepted]]
        factors = np.array([clip[i] for i in accepted])
        if agg.scoring == "loss_gain":
            losses = np.array([loss_alone[i] for i in accepted])
            s = loss_gain_alone(ref_loss, losses)
        else:

            def value(mask: np.ndarray) -> float:
                if not mask.any():
                    return 0.0
                wts = mask.astype(np.float64) * factors
                mean = weighted_mean(acc_x, wts) * (float(wts.sum()) / int(mask.sum()))
                return ref_loss - loss_of(mean)

            if agg.scoring == "loo":
                s = leave_one_out(value, len(accepted))
            else:
                s = shapley_monte_carlo(
                    value, len(accepted), permutations=agg.shapley_permutations, seed=agg.seed
                )
        for k, i in enumerate(accepted):
            scores[i] = float(s[k])
        # mean of the clipped rows = weighted mean with the clip factors, rescaled
        acc_delta = weighted_mean(acc_x, factors) * (float(factors.sum()) / len(accepted))
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
class PendingRound:
    """A computed round not yet posted (deterministic: recomputing gives the same result)."""

    round: int
    submissions: list[Submission]
    outcome: RoundOutcome


@dataclass
class ReplayedRound:
    """An already posted round recomputed from chain + store while rebuilding a driver."""

    post: RoundPost
    outcome: RoundOutcome
    matches: bool  # recomputed model hash and reasons equal what was posted


class RoundAlreadyPosted(FedMarketError):
    """The chain moved past the round this driver computed (another incarnation posted it)."""


class StoreOutage(StorageUnavailable):
    """Every revealed blob failed with StorageUnavailable: the aggregator's own store is down."""


@dataclass
class RoundDriver:
    """Runs one job's rounds for its aggregator: gather → compute_round → store → post.

    `history` (accepted updates of earlier rounds, for replay detection) and `momentum` (the
    outer optimizer's state) live in memory; `rebuild()` recomputes them from chain + store
    after a restart, so a resumed aggregator posts exactly what an uninterrupted one would.
    """

    market: MarketClient
    store: ContentStore
    account: LocalAccount
    job_id: int
    validation: Dataset
    fetch_timeout_s: float = 30.0  # per blob: how long a missing/unreachable blob is retried
    fetch_retry_s: float = 0.5
    spec: JobSpec = field(init=False)
    history: list[np.ndarray] = field(default_factory=list)
    momentum: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.spec = fetch_job_spec(self.market, self.store, self.job_id)

    @property
    def rounds_done(self) -> int:
        """How many rounds this driver's in-memory state covers."""
        return len(self.history)

    def ready(self) -> bool:
        """Whether the current round's reveal phase is over and its post is due."""
        return self.market.phase_of(self.job_id) == Phase.AWAITING_POST

    def _fetch(self, rev: Reveal) -> tuple[bytes | None, Reason, str, bool]:
        """(blob, reason, detail, store_down) for one revealed update, retried up to a timeout.

        A hash mismatch is final at once; missing content and an unreachable store are retried
        until `fetch_timeout_s`, then the update is marked UNAVAILABLE (not slashable).
        """
        deadline = time.monotonic() + self.fetch_timeout_s
        while True:
            try:
                return (
                    fetch_verified(self.store, rev.cid, rev.content_hash),
                    Reason.ACCEPTED,
                    "",
                    False,
                )
            except ContentMismatch as exc:
                return None, Reason.HASH_MISMATCH, str(exc), False
            except (ContentNotFound, StorageUnavailable) as exc:
                down = isinstance(exc, StorageUnavailable)
                if time.monotonic() >= deadline:
                    what = "store unreachable" if down else "content not found"
                    detail = f"{what} after {self.fetch_timeout_s:g}s: {exc}"
                    return None, Reason.UNAVAILABLE, detail, down
                time.sleep(min(self.fetch_retry_s, max(0.0, deadline - time.monotonic())))

    def gather(
        self, round_: int, known_reasons: Mapping[str, int] | None = None
    ) -> list[Submission]:
        """Fetch and verify every revealed update; map each failure to its reason code.

        `known_reasons` (trainer → posted reason) is used when replaying a posted round: an
        update posted as unavailable or mismatching is taken as such, whatever the store says now.
        Raises StoreOutage when every revealed blob failed because the store is unreachable.
        """
        out: list[Submission] = []
        fetched = down = 0
        for entry in self.market.round_entries(self.job_id, round_):
            trainer, rev, order = entry.trainer, entry.reveal, entry.commit_order
            if rev is None:
                out.append(Submission(trainer, None, Reason.MISSING, "no reveal this round", order))
                continue
            known = (known_reasons or {}).get(trainer)
            if known in (Reason.UNAVAILABLE, Reason.HASH_MISMATCH):
                reason = Reason(known)
                out.append(Submission(trainer, None, reason, "as posted on chain", order))
                continue
            blob, reason, detail, store_down = self._fetch(rev)
            fetched += 1
            down += int(store_down)
            out.append(Submission(trainer, blob, reason, detail, order))
        if fetched and down == fetched:
            raise StoreOutage(
                f"job {self.job_id} round {round_}: the store is unreachable for every update"
            )
        return out

    def _weights_at(self, model_hash: bytes, model_cid: str) -> Tensors:
        return fetch_weights(self.store, self.spec, model_hash, model_cid)

    def global_weights(self) -> Tensors:
        return self._weights_at(*self.market.current_model(self.job_id))

    def _previous(self) -> np.ndarray | None:
        return np.concatenate(self.history[-3:]) if self.history else None

    def rebuild(self) -> list[ReplayedRound]:
        """Recompute `history` and `momentum` by replaying every posted round (deterministic).

        Each replay's model hash and reasons are checked against the post; a mismatch is logged
        (the state is still rebuilt from the recomputation, the best available).
        """
        posts = self.market.round_posts(self.job_id)
        participants = self.market.participants(self.job_id)
        params = self.market.job_created(self.job_id)["params"]
        prev = (bytes(params["initialModelHash"]), str(params["initialModelCid"]))
        self.history, self.momentum = [], None
        replayed: list[ReplayedRound] = []
        for post in posts:
            weights = self._weights_at(*prev)
            known = dict(zip(participants, post.reasons, strict=False))
            submissions = self.gather(post.round, known)
            outcome = compute_round(
                self.spec, weights, submissions, self.validation, self._previous(), self.momentum
            )
            ok = (
                sha256_bytes(outcome.next_model_blob) == post.model_hash
                and outcome.reasons == post.reasons
            )
            if not ok:
                log.warning(
                    "job %d round %d: replay does not reproduce the posted result "
                    "(model hash or reasons differ); continuing from the recomputation",
                    self.job_id,
                    post.round,
                )
            self.history.append(outcome.accepted_updates)
            self.momentum = outcome.momentum
            replayed.append(ReplayedRound(post, outcome, ok))
            prev = (post.model_hash, post.model_cid)
        return replayed

    def compute(self) -> PendingRound:
        """Compute the current round (no transaction). Deterministic, so safe to redo."""
        round_ = int(self.market.job(self.job_id).currentRound)
        if self.rounds_done != round_ - 1:
            raise RoundAlreadyPosted(
                f"job {self.job_id}: driver state covers {self.rounds_done} rounds but the chain "
                f"is at round {round_}; rebuild first"
            )
        weights = self.global_weights()  # fails early (StorageUnavailable) if the store is down
        submissions = self.gather(round_)
        outcome = compute_round(
            self.spec, weights, submissions, self.validation, self._previous(), self.momentum
        )
        return PendingRound(round_, submissions, outcome)

    def post(self, pending: PendingRound) -> RoundReport:
        """Store the next model and post the round, unless the chain already moved on."""
        current = int(self.market.job(self.job_id).currentRound)
        if current != pending.round:
            raise RoundAlreadyPosted(
                f"job {self.job_id}: round {pending.round} is no longer current (chain at "
                f"round {current}); not posting it again"
            )
        outcome = pending.outcome
        cid = self.store.put(outcome.next_model_blob)
        model_hash = sha256_bytes(outcome.next_model_blob)
        result = self.market.post_round(
            self.account,
            self.job_id,
            pending.round,
            model_hash,
            cid,
            outcome.scores_fp,
            outcome.reasons,
        )
        self.history.append(outcome.accepted_updates)
        self.momentum = outcome.momentum
        return RoundReport(
            self.job_id, pending.round, outcome, cid, model_hash, result.gas_used, result.tx_hash
        )

    def run_round(self) -> RoundReport:
        return self.post(self.compute())
