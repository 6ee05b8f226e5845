"""The round as named pure stages: decode → copies → outliers → reference → losses alone → harm
→ scores → aggregate.

Each stage takes the round's inputs and the previous stages' small records and returns a new
record; none does I/O, and the floating-point operations run in the same order as they always
have (the golden test pins scores, reasons and model hash bit for bit).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from aggregator.round.records import PublicUpdates, RoundOutcome, Submission, TrainerOutcome
from aggregator.rules.consensus import clip_factors, reference_direction, reference_test
from aggregator.rules.copies import copy_verdict
from aggregator.rules.fixedpoint import to_fixed_point
from aggregator.rules.harm import harm_bar
from aggregator.rules.information import (
    chance_gain_scale,
    information_scores,
    innovation,
    public_basis,
)
from aggregator.rules.outer import OuterOptimizer, outer_step, weighted_mean
from aggregator.rules.scoring import leave_one_out, loss_gain_alone, shapley_monte_carlo
from aggregator.rules.screening import OutlierRule, screen_updates
from backend.core import codec
from backend.core.codec import Template, Tensors
from backend.core.compression import decode_update_with_metadata
from backend.core.datasets import Dataset
from backend.core.errors import Reason, UpdateRejected
from backend.core.jobspec import JobSpec
from backend.core.models import evaluate, loss_gradient
from backend.core.privacy import PrivacyClaim, claim_from_metadata

__all__ = [
    "Copies",
    "Decoded",
    "LossProbe",
    "RoundInputs",
    "Scored",
    "Selection",
    "Verdicts",
    "aggregate",
    "check_harm",
    "check_reference",
    "clip_of",
    "decode",
    "find_copies",
    "information",
    "losses_alone",
    "rule_of",
    "score",
    "screen",
]

_DUPLICATED_DETAIL = (
    "alike another update this round beyond the round's typical similarity: "
    "not aggregated, not paid, not flagged"
)

_COPY_DETAILS = {
    Reason.COPY: "copy or scaled copy of another update this round",
    Reason.REPLAY: "replay of an update from an earlier round",
    Reason.NEAR_ZERO: "near-zero update (free rider)",
}


def rule_of(spec: JobSpec) -> OutlierRule:
    """The job's robust rule (the round-level tests' settings are not part of it)."""
    return OutlierRule(**spec.aggregation.rule.model_dump(exclude={"harm_ratio", "ref_cos_ratio"}))


@dataclass(frozen=True, eq=False)  # arrays and tensors: == would be ambiguous
class RoundInputs:
    """The public inputs of one round (see `compute_round`)."""

    spec: JobSpec
    template: Template
    global_weights: Tensors
    submissions: Sequence[Submission]
    validation: Dataset
    previous: PublicUpdates | None = None
    momentum: np.ndarray | None = None

    @functools.cached_property
    def public_updates(self) -> PublicUpdates | None:
        """Everything public before this round: earlier updates and the momentum (which
        carries every earlier aggregate; owner '', a source like any accepted update). Built
        once per round: copy detection and information scoring both read it."""
        prev, mom = self.previous, self.momentum
        if mom is None or not np.any(mom):
            return prev
        row = np.asarray(mom)[None, :]
        if prev is None:
            return PublicUpdates(row, ("",), np.ones(1, dtype=bool))
        return prev.with_row(row, "")

    def by_trainer(self, indices: Sequence[int]) -> list[int]:
        """``indices`` in trainer-address order (a fixed, public order)."""
        return sorted(indices, key=lambda i: self.submissions[i].trainer.lower())


@dataclass(frozen=True)
class Verdicts:
    """Each submission's reason and detail so far, in submission order."""

    reasons: tuple[Reason, ...]
    details: tuple[str, ...]

    def updated(self, changes: Mapping[int, tuple[Reason, str]]) -> Verdicts:
        """A copy with ``changes`` (submission index → (reason, detail)) applied."""
        reasons, details = list(self.reasons), list(self.details)
        for i, (reason, detail) in changes.items():
            reasons[i], details[i] = reason, detail
        return Verdicts(tuple(reasons), tuple(details))


@dataclass(frozen=True, eq=False)
class Decoded:
    """The decodable updates as rows of ``x`` and the verdicts on the others."""

    x: np.ndarray  # (rows, d) float32
    row_of: dict[int, int]  # submission index → its row in x
    valid: list[int]  # decodable submissions, in trainer-address order
    norms: np.ndarray  # (n,) L2 norm of each decodable update, 0 for the others
    verdicts: Verdicts
    claims: dict[int, PrivacyClaim] = field(default_factory=dict)  # submission → its ε claim

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """The rows of the submissions ``indices``, in that order: ``x`` itself when that is
        every row in ``x``'s order (read only: no stage writes into it), else a copy."""
        order = [self.row_of[i] for i in indices]
        if order == list(range(self.x.shape[0])):
            return self.x
        return self.x[order]


@dataclass(frozen=True)
class Selection:
    """Verdicts plus which updates are aggregated and which are held out without evidence."""

    verdicts: Verdicts
    accepted: list[int]  # aggregated, in trainer-address order
    held_out: list[int]  # not selected by a selection-only rule: not aggregated, not flagged

    def hold(self, details: Mapping[int, str]) -> Selection:
        """A copy with the updates ``details`` names held out: not aggregated, not flagged."""
        verdicts = self.verdicts.updated({i: (Reason.ACCEPTED, d) for i, d in details.items()})
        accepted = [i for i in self.accepted if i not in details]
        return Selection(verdicts, accepted, sorted([*self.held_out, *details]))

    def flag(self, changes: Mapping[int, tuple[Reason, str]]) -> Selection:
        """A copy with ``changes`` applied and the flagged updates dropped from ``accepted``."""
        verdicts = self.verdicts.updated(changes)
        accepted = [i for i in self.accepted if verdicts.reasons[i] == Reason.ACCEPTED]
        return Selection(verdicts, accepted, self.held_out)


def _decode_one(
    inputs: RoundInputs, blob: bytes
) -> tuple[np.ndarray, PrivacyClaim | None] | UpdateRejected:
    """The flattened float32 row of one revealed update and its privacy claim, or why it was
    rejected (a malformed claim is UNDECODABLE, like any malformed header)."""
    spec = inputs.spec
    try:
        tensors, meta = decode_update_with_metadata(
            blob, inputs.template, spec.codec, spec.aggregation.max_update_bytes
        )
        claim = claim_from_metadata(meta)
    except UpdateRejected as rej:
        return rej
    return inputs.template.flatten(tensors, np.float32), claim


def decode(inputs: RoundInputs) -> Decoded:
    """Decode every obtained update, in trainer-address order; reject the undecodable ones."""
    subs = inputs.submissions
    n = len(subs)
    changes: dict[int, tuple[Reason, str]] = {}
    # Rows go straight into one matrix (no list of rows to stack: that held the updates twice)
    x = np.empty((sum(s.blob is not None for s in subs), inputs.template.size), np.float32)
    row_of: dict[int, int] = {}
    claims: dict[int, PrivacyClaim] = {}
    for i in inputs.by_trainer(range(n)):
        if subs[i].reason != Reason.ACCEPTED:
            continue
        blob = subs[i].blob
        if blob is None:
            changes[i] = (Reason.MISSING, "no update revealed this round")
            continue
        got = _decode_one(inputs, blob)
        if isinstance(got, UpdateRejected):
            changes[i] = (got.reason, got.detail)
            continue
        row, claim = got
        x[len(row_of)] = row
        row_of[i] = len(row_of)
        if claim is not None:
            claims[i] = claim
    valid = inputs.by_trainer(row_of)
    x = x[: len(row_of)]
    norms = np.zeros(n)
    for i in valid:
        norms[i] = float(np.linalg.norm(x[row_of[i]].astype(np.float64)))
    verdicts = Verdicts(tuple(s.reason for s in subs), tuple(s.detail for s in subs))
    return Decoded(x, row_of, valid, norms, verdicts.updated(changes), claims)


@dataclass(frozen=True)
class Copies:
    """Verdicts after copy detection, and the clean originals that others duplicate."""

    verdicts: Verdicts
    duplicated: list[int]  # submission indices: not flagged, but their information is shared


def find_copies(inputs: RoundInputs, decoded: Decoded) -> Copies:
    """Copies, replays and free riders, in commit order: the earlier commit is the original."""
    if not decoded.valid:
        return Copies(decoded.verdicts, [])
    agg, subs = inputs.spec.aggregation, inputs.submissions
    by_commit = sorted(decoded.valid, key=lambda i: (subs[i].commit_order, subs[i].trainer.lower()))
    public = inputs.public_updates
    known = public is None or public.owners is not None  # nothing earlier: nothing unknown
    verdict = copy_verdict(
        decoded.x,
        None if public is None else public.blocks,
        order=[decoded.row_of[i] for i in by_commit],
        owners=[subs[i].trainer for i in by_commit] if known else None,
        previous_owners=() if public is None else public.owners,
        sources=None if public is None else public.sources,
        rel_tol=agg.copy_rel_tol,
        scale_cos=agg.copy_scale_cos,
        zero_ratio=agg.zero_ratio,
        max_fraction=agg.max_colluding_fraction,
    )
    changes = {
        i: (Reason(int(r)), _COPY_DETAILS[Reason(int(r))] + f" (cosine >= {verdict.bar:.4f})")
        for i, r in zip(by_commit, verdict.reasons, strict=True)
        if int(r) != 0
    }
    duplicated = [i for i, dup in zip(by_commit, verdict.duplicated, strict=True) if dup]
    return Copies(decoded.verdicts.updated(changes), duplicated)


def screen(inputs: RoundInputs, decoded: Decoded, copies: Copies) -> Selection:
    """Outliers among the remaining candidates, by the job's robust rule.

    Only evidence is flagged (slashable); an update a selection-only rule (Multi-Krum) merely
    did not select is held out: not aggregated, score 0, but reason ACCEPTED (not slashed).
    So is an original that others duplicated this round: its information is not its own.
    """
    name = inputs.spec.aggregation.rule.name
    verdicts = copies.verdicts.updated(
        {i: (Reason.ACCEPTED, _DUPLICATED_DETAIL) for i in copies.duplicated}
    )
    candidates = [
        i
        for i in decoded.valid
        if verdicts.reasons[i] == Reason.ACCEPTED and i not in copies.duplicated
    ]
    if not candidates:
        return Selection(verdicts, [], list(copies.duplicated))
    verdict = screen_updates(decoded.rows(candidates), rule_of(inputs.spec))
    changes: dict[int, tuple[Reason, str]] = {}
    held_out: list[int] = []
    for k, i in enumerate(candidates):
        if verdict.flagged[k]:
            detail = f"flagged by the {name} rule (norm {decoded.norms[i]:.4g})"
            changes[i] = (Reason.OUTLIER, detail)
        elif verdict.excluded[k]:
            held_out.append(i)
            detail = f"not selected by the {name} rule: not aggregated, not flagged"
            changes[i] = (Reason.ACCEPTED, detail)
    verdicts = verdicts.updated(changes)
    accepted = [
        i for i in candidates if verdicts.reasons[i] == Reason.ACCEPTED and i not in held_out
    ]
    return Selection(verdicts, accepted, sorted(held_out + copies.duplicated))


def check_reference(inputs: RoundInputs, decoded: Decoded, selection: Selection) -> Selection:
    """The consensus rule's reference-direction test (`aggregator.rules.consensus`).

    A low cosine to one seeded training pass on the validation split is a statistical
    judgement, not proof: honest trainers with skewed shards fall there too. Such updates are
    held out (not aggregated, not paid) but not flagged; the harm test, which measures the
    damage, still flags them if they hurt.
    """
    rule = inputs.spec.aggregation.rule
    ratio = rule.ref_cos_ratio
    accepted = selection.accepted
    if not (rule.name == "consensus" and ratio > 0 and len(accepted) >= 3):
        return selection
    ref = reference_direction(
        inputs.spec, inputs.global_weights, inputs.validation, inputs.template
    )
    verdict = reference_test(decoded.x, ref, ratio, order=[decoded.row_of[i] for i in accepted])
    if not verdict.median > 0:
        return selection
    held = {
        i: f"off the reference direction: cosine {c:.3f} < {ratio:g} x the median "
        f"{verdict.median:.3f}; held out (not aggregated, not paid), not flagged"
        for i, c, low in zip(accepted, verdict.cosines, verdict.flagged, strict=True)
        if low
    }
    return selection.hold(held)


@dataclass(frozen=True, eq=False)
class LossProbe:
    """Validation loss of the model one outer step with a candidate delta would give."""

    inputs: RoundInputs
    w: np.ndarray  # the global model, flattened in float64
    opt: OuterOptimizer

    @classmethod
    def of(cls, inputs: RoundInputs) -> LossProbe:
        """The probe for this round's global model, optimizer settings and momentum."""
        agg = inputs.spec.aggregation
        opt = OuterOptimizer(kind=agg.outer, lr=agg.server_lr, momentum=agg.momentum)
        return cls(inputs, inputs.template.flatten(inputs.global_weights, np.float64), opt)

    def step(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(next flat weights, next momentum) after one outer step with ``delta``."""
        return outer_step(self.w, delta, self.opt, self.inputs.momentum)

    def loss_of(self, delta: np.ndarray) -> float:
        """Validation loss after the step (1e9 when not finite)."""
        w_new, _ = self.step(delta)
        val, template = self.inputs.validation, self.inputs.template
        loss, _ = evaluate(self.inputs.spec.model, template.unflatten(w_new), val.x, val.y)
        return loss if np.isfinite(loss) else 1e9


def clip_of(inputs: RoundInputs, decoded: Decoded, accepted: Sequence[int]) -> dict[int, float]:
    """Each accepted update's clip factor: the consensus rule clips norms, others keep 1."""
    rule = inputs.spec.aggregation.rule
    if not (rule.name == "consensus" and len(accepted) >= 3):
        return {i: 1.0 for i in accepted}
    factors = clip_factors([decoded.norms[i] for i in accepted], rule.max_norm_ratio)
    return dict(zip(accepted, factors, strict=True))


def _at_share(
    decoded: Decoded, selection: Selection, clip: Mapping[int, float], i: int
) -> np.ndarray:
    """Update ``i`` at its share of the aggregate (Δ_i / k, clipped), as float64."""
    share = 1.0 / max(len(selection.accepted), 1)
    return share * clip.get(i, 1.0) * decoded.x[decoded.row_of[i]].astype(np.float64)


def losses_alone(
    probe: LossProbe, decoded: Decoded, selection: Selection, clip: Mapping[int, float]
) -> dict[int, float]:
    """Validation loss of each accepted or held-out update applied alone, at its share.

    Each update is applied at its share of the aggregate (Δ_i / k), against the step the outer
    optimizer takes anyway (momentum only): applied at full weight, one non-IID shard's update
    overshoots and looks harmful when it is not. Held-out updates are measured too: harm is
    evidence whether or not the rule selected them.
    """
    return {
        i: probe.loss_of(_at_share(decoded, selection, clip, i))
        for i in selection.accepted + selection.held_out
    }


def check_harm(
    probe: LossProbe,
    decoded: Decoded,
    selection: Selection,
    clip: Mapping[int, float],
    loss_alone: Mapping[int, float],
    ref_loss: float,
) -> Selection:
    """Flag an update that hurts the validation loss beyond the harm bar
    (`aggregator.rules.harm`) both alone and added to the round's other updates; hold out,
    unflagged, one that alone hurts it at all.

    Alone beyond the bar is not evidence on its own: an honest shard of a few classes, applied
    alone late in training, drags the model toward them (the adaptive benchmark's honest-only
    runs slashed 2 of 600 such trainer-rounds). Added to everyone else's updates it supplies the
    classes they lack, and helps or barely hurts; a sign or label flip hurts there too. Both
    beyond the bar is evidence (slashable); anything else that alone hurts is not aggregated and
    not paid (it earns no information score anyway), not slashed.
    """
    harm_ratio = probe.inputs.spec.aggregation.rule.harm_ratio
    if not (harm_ratio > 0 and len(selection.accepted) >= 3):
        return selection
    gains = np.array([ref_loss - loss_alone[i] for i in selection.accepted])
    bar = harm_bar(gains, harm_ratio, probe.inputs.spec.aggregation.max_colluding_fraction)
    if bar is None:
        return selection
    suspects = [
        i for i in selection.accepted + selection.held_out if ref_loss - loss_alone[i] < bar
    ]
    added = _gains_when_added(probe, decoded, selection, clip, suspects)
    changes: dict[int, tuple[Reason, str]] = {}
    hurting: dict[int, str] = {}
    for i in selection.accepted + selection.held_out:
        g = ref_loss - loss_alone[i]
        if i in added and added[i] < bar:
            changes[i] = (
                Reason.OUTLIER,
                f"harmful: alone it changes the validation loss by {-g:+.4g}, added to the "
                f"round's other updates by {-added[i]:+.4g}, both below the harm bar {bar:.4g}",
            )
        elif g < 0 and i in selection.accepted:
            hurting[i] = f"alone it raises the validation loss ({-g:+.4g}): held out, not flagged"
    return selection.flag(changes).hold(hurting)


def _gains_when_added(
    probe: LossProbe,
    decoded: Decoded,
    selection: Selection,
    clip: Mapping[int, float],
    suspects: Sequence[int],
) -> dict[int, float]:
    """Each suspect's validation gain when added, at its share, to the sum of the accepted
    updates that are not suspects (what the round would aggregate without any of them)."""
    if not suspects:
        return {}
    rest = np.zeros(probe.inputs.template.size)
    for i in selection.accepted:
        if i not in suspects:
            rest += _at_share(decoded, selection, clip, i)
    base = probe.loss_of(rest)
    return {
        i: base - probe.loss_of(rest + _at_share(decoded, selection, clip, i)) for i in suspects
    }


@dataclass(frozen=True, eq=False)
class Scored:
    """Each submission's score (0 unless aggregated) and the aggregated delta."""

    scores: np.ndarray  # (n,) float64
    delta: np.ndarray  # (d,) float64: mean of the clipped accepted rows


def information(
    probe: LossProbe,
    decoded: Decoded,
    accepted: Sequence[int],
    clip: Mapping[int, float],
    ref_loss: float,
) -> np.ndarray:
    """Each accepted update's information score (`aggregator.rules.information`).

    Its innovation (the part outside the span of everything public) applied alone at its
    share, against the step the outer optimizer takes anyway; paid beyond what the same
    magnitudes with random signs would gain by chance.
    """
    inputs = probe.inputs
    public = inputs.public_updates
    basis = public_basis(None if public is None else public.blocks)
    w_ref, _ = probe.step(np.zeros(inputs.template.size))
    val = inputs.validation
    grads = loss_gradient(inputs.spec.model, inputs.template.unflatten(w_ref), val.x, val.y)
    gradient = inputs.template.flatten(grads, np.float64)
    share = 1.0 / len(accepted)
    gains, chance = np.zeros(len(accepted)), np.zeros(len(accepted))
    for k, i in enumerate(accepted):
        row = decoded.x[decoded.row_of[i]]
        delta = innovation(share * clip.get(i, 1.0) * row.astype(np.float64), basis)
        gains[k] = ref_loss - probe.loss_of(delta)
        chance[k] = chance_gain_scale(gradient, probe.step(delta)[0] - w_ref)
    return information_scores(gains, chance, inputs.spec.aggregation.info_sigmas)


def score(
    probe: LossProbe,
    decoded: Decoded,
    accepted: Sequence[int],
    clip: Mapping[int, float],
    loss_alone: Mapping[int, float],
    ref_loss: float,
) -> Scored:
    """Score the aggregated updates by the job's scoring method; aggregate them."""
    agg = probe.inputs.spec.aggregation
    scores = np.zeros(len(probe.inputs.submissions))
    if not accepted:
        return Scored(scores, np.zeros(probe.inputs.template.size))
    # Weights over every decoded row (0: not aggregated) rather than a copy of the accepted
    # rows: `weighted_mean` skips zero weights and sums in row order, which is trainer-address
    # order, the accepted rows' order: the same sum, bit for bit.
    acc_rows = [decoded.row_of[i] for i in accepted]
    factors = np.array([clip[i] for i in accepted])
    if agg.scoring == "information":
        s = information(probe, decoded, accepted, clip, ref_loss)
    elif agg.scoring == "loss_gain":
        s = loss_gain_alone(ref_loss, np.array([loss_alone[i] for i in accepted]))
    else:

        def value(mask: np.ndarray) -> float:
            if not mask.any():
                return 0.0
            wts = mask.astype(np.float64) * factors
            mean = weighted_mean(decoded.x, _spread(wts, acc_rows, decoded))
            mean *= float(wts.sum()) / int(mask.sum())
            return ref_loss - probe.loss_of(mean)

        if agg.scoring == "loo":
            s = leave_one_out(value, len(accepted))
        else:
            s = shapley_monte_carlo(
                value, len(accepted), permutations=agg.shapley_permutations, seed=agg.seed
            )
    for k, i in enumerate(accepted):
        scores[i] = float(s[k])
    # mean of the clipped rows = weighted mean with the clip factors, rescaled
    delta = weighted_mean(decoded.x, _spread(factors, acc_rows, decoded))
    delta *= float(factors.sum()) / len(accepted)
    return Scored(scores, delta)


def _spread(weights: np.ndarray, rows: Sequence[int], decoded: Decoded) -> np.ndarray:
    """``weights`` of the rows ``rows`` as a weight for every row of ``decoded.x`` (0 else)."""
    full = np.zeros(decoded.x.shape[0])
    full[rows] = weights
    return full


def aggregate(
    probe: LossProbe, decoded: Decoded, verdicts: Verdicts, scored: Scored, loss_before: float
) -> RoundOutcome:
    """Take the outer step with the aggregated delta and assemble the round's outcome."""
    inputs = probe.inputs
    w_next, momentum_next = probe.step(scored.delta)
    next_weights = inputs.template.unflatten(w_next)
    val = inputs.validation
    loss_after, acc_after = evaluate(inputs.spec.model, next_weights, val.x, val.y)
    fixed = to_fixed_point(scored.scores)
    outcomes = [
        TrainerOutcome(
            s.trainer,
            verdicts.reasons[i],
            verdicts.details[i],
            float(scored.scores[i]),
            int(fixed[i]),
            float(decoded.norms[i]),
            decoded.claims.get(i),
        )
        for i, s in enumerate(inputs.submissions)
    ]
    return RoundOutcome(
        outcomes,
        next_weights,
        codec.encode(next_weights),
        loss_before,
        loss_after,
        acc_after,
        decoded.rows(decoded.valid) if decoded.valid else decoded.x,
        momentum_next,
        tuple(inputs.submissions[i].trainer for i in decoded.valid),
    )
