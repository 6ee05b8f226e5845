"""The round computation: bad updates are rejected with reasons, the round still closes, and
re-running it from the same inputs gives the same result bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from aggregator.round.compute import Submission, compute_round
from backend.core import codec
from backend.core.datasets import Dataset, load_digits_dataset, shard, split_train_validation_test
from backend.core.errors import Reason
from backend.core.jobspec import JobSpec
from backend.core.models import ModelSpec, build_model, get_weights
from backend.core.training import pseudo_gradient, train_local
from trainer_client import adversaries as attacks


@pytest.fixture(scope="module")
def setting():
    data = load_digits_dataset()
    train, val, _ = split_train_validation_test(data)
    spec = JobSpec(model=ModelSpec(hidden=[16]))
    w0 = get_weights(build_model(spec.model))
    deltas = []
    for i, part in enumerate(shard(train, 5)):
        w_local, _ = train_local(spec.model, w0, part, spec.training, seed=i)
        deltas.append(pseudo_gradient(w0, w_local))
    return spec, w0, val, deltas


def _subs(deltas, extra=()) -> list[Submission]:
    subs = [
        Submission(f"0x{i + 1:040x}", codec.encode(d), commit_order=i) for i, d in enumerate(deltas)
    ]
    return subs + list(extra)


def test_honest_round_improves_validation_loss_and_scores_positive(setting) -> None:
    spec, w0, val, deltas = setting
    out = compute_round(spec, w0, _subs(deltas), val)
    assert [o.reason for o in out.outcomes] == [Reason.ACCEPTED] * 5
    assert out.loss_after < out.loss_before
    assert all(o.score > 0 and o.score_fp > 0 for o in out.outcomes)


def test_bad_updates_get_reasons_and_zero_scores_and_round_still_closes(setting) -> None:
    spec, w0, val, deltas = setting
    first = next(iter(deltas[0]))
    nan = {k: (np.full_like(v, np.nan) if k == first else v) for k, v in deltas[0].items()}
    wrong = {k: v[..., :1] for k, v in deltas[0].items()}
    bad = [
        Submission("0x" + "a" * 40, b"garbage", commit_order=10),
        Submission("0x" + "b" * 40, codec.encode(nan), commit_order=11),
        Submission("0x" + "c" * 40, codec.encode(wrong), commit_order=12),
        Submission("0x" + "d" * 40, None, Reason.MISSING, "no reveal", commit_order=13),
        Submission("0x" + "e" * 40, None, Reason.HASH_MISMATCH, "sha mismatch", commit_order=14),
        Submission("0x" + "f" * 40, codec.encode(attacks.sign_flip(deltas[1])), commit_order=15),
        Submission("0x" + "9" * 40, codec.encode(deltas[2]), commit_order=16),  # a copy
        Submission("0x" + "8" * 40, codec.encode(attacks.near_zero(deltas[3])), commit_order=17),
    ]
    out = compute_round(spec, w0, _subs(deltas, bad), val)
    got = {o.trainer: o.reason for o in out.outcomes[5:]}
    assert got == {
        "0x" + "a" * 40: Reason.UNDECODABLE,
        "0x" + "b" * 40: Reason.NON_FINITE,
        "0x" + "c" * 40: Reason.WRONG_SHAPE,
        "0x" + "d" * 40: Reason.MISSING,
        "0x" + "e" * 40: Reason.HASH_MISMATCH,
        "0x" + "f" * 40: Reason.OUTLIER,
        "0x" + "9" * 40: Reason.COPY,
        "0x" + "8" * 40: Reason.NEAR_ZERO,
    }
    assert all(o.score_fp == 0 for o in out.outcomes[5:])
    assert all(o.reason == Reason.ACCEPTED for o in out.outcomes[:5])
    assert all(o.detail for o in out.outcomes[5:])
    assert out.loss_after < out.loss_before


def test_replay_of_an_earlier_round_is_flagged(setting) -> None:
    spec, w0, val, deltas = setting
    previous = np.stack(
        [spec_t.flatten(deltas[0], np.float32) for spec_t in [codec.Template.of(deltas[0])]]
    )
    out = compute_round(spec, w0, _subs(deltas), val, previous_updates=previous)
    assert out.outcomes[0].reason == Reason.REPLAY
    assert [o.reason for o in out.outcomes[1:]] == [Reason.ACCEPTED] * 4


def test_deterministic_bit_for_bit(setting) -> None:
    spec, w0, val, deltas = setting
    a = compute_round(spec, w0, _subs(deltas), val)
    b = compute_round(spec, w0, list(reversed(_subs(deltas)))[::-1], val)
    assert a.next_model_blob == b.next_model_blob
    assert a.scores_fp == b.scores_fp and a.reasons == b.reasons


@pytest.mark.parametrize("scoring", ["loo", "shapley"])
def test_marginal_scorings_are_non_negative(setting, scoring) -> None:
    spec, w0, val, deltas = setting
    spec2 = spec.model_copy(
        update={
            "aggregation": spec.aggregation.model_copy(
                update={"scoring": scoring, "shapley_permutations": 8}
            )
        }
    )
    flipped = codec.encode(attacks.sign_flip(deltas[0], scale=1.0))
    subs = [*_subs(deltas), Submission("0x" + "7" * 40, flipped, commit_order=9)]
    out = compute_round(spec2, w0, subs, val)
    assert all(o.score >= 0 for o in out.outcomes)
    assert sum(o.score for o in out.outcomes) > 0


def test_no_accepted_updates_keeps_the_model(setting) -> None:
    spec, w0, val, _ = setting
    out = compute_round(spec, w0, [Submission("0x" + "1" * 40, None, Reason.MISSING)], val)
    assert out.next_model_blob == codec.encode(w0)
    assert out.reasons == [int(Reason.MISSING)]


def test_consensus_flags_label_flip_by_reference_direction(setting) -> None:
    spec, w0, val, deltas = setting
    data = load_digits_dataset()
    train, _, _ = split_train_validation_test(data)
    part = shard(train, 5)[0]
    flipped = Dataset(part.x, attacks.flip_labels(part.y, 10))
    w_bad, _ = train_local(spec.model, w0, flipped, spec.training, seed=99)
    bad = Submission("0x" + "f" * 40, codec.encode(pseudo_gradient(w0, w_bad)), commit_order=9)
    out = compute_round(spec, w0, [*_subs(deltas), bad], val)
    assert [o.reason for o in out.outcomes][:5] == [Reason.ACCEPTED] * 5
    last = out.outcomes[-1]
    # Off the reference direction or alone hurting: held out (not aggregated, not paid), and
    # flagged only if the harm passes the bar. Never paid either way.
    assert last.score_fp == 0
    assert last.reason == Reason.OUTLIER or "held out" in last.detail, last.detail
    honest_only = compute_round(spec, w0, _subs(deltas), val)
    assert out.next_model_blob == honest_only.next_model_blob  # not in the aggregate


def test_reference_test_can_be_disabled(setting) -> None:
    spec, w0, val, deltas = setting
    rule = spec.aggregation.rule.model_copy(update={"ref_cos_ratio": 0.0, "harm_ratio": 0.0})
    spec2 = spec.model_copy(
        update={"aggregation": spec.aggregation.model_copy(update={"rule": rule})}
    )
    out = compute_round(spec2, w0, _subs(deltas), val)
    assert all(o.reason == Reason.ACCEPTED for o in out.outcomes)


def _with_rule(spec: JobSpec, **rule) -> JobSpec:
    new_rule = spec.aggregation.rule.model_copy(update=rule)
    return spec.model_copy(
        update={"aggregation": spec.aggregation.model_copy(update={"rule": new_rule})}
    )


def test_multi_krum_all_honest_round_flags_and_slashes_nobody(setting) -> None:
    # Regression (issue 11.9): Multi-Krum keeps n - f updates whatever the data, so one of five
    # honest updates was flagged OUTLIER and its trainer slashed. Not being selected is not
    # evidence: the update is held out of the aggregate with score 0 and reason ACCEPTED.
    spec, w0, val, deltas = setting
    subs = _subs(deltas)
    out = compute_round(_with_rule(spec, name="multi_krum"), w0, subs, val)
    assert out.reasons == [int(Reason.ACCEPTED)] * 5
    assert not any(Reason(r).slashable for r in out.reasons)
    held = [k for k, o in enumerate(out.outcomes) if "not selected" in o.detail]
    assert len(held) == 1  # num_malicious = 1: to_keep = n - 1
    assert out.outcomes[held[0]].score_fp == 0
    assert all(o.score_fp > 0 for k, o in enumerate(out.outcomes) if k not in held)
    # not aggregated: the same round without the held-out update gives the same model and
    # scores (norm_bound flags none of these four, and adds no test of its own)
    selected = [s for k, s in enumerate(subs) if k not in held]
    ref = compute_round(_with_rule(spec, name="norm_bound"), w0, selected, val)
    assert ref.reasons == [int(Reason.ACCEPTED)] * 4
    assert out.next_model_blob == ref.next_model_blob
    assert [o.score_fp for k, o in enumerate(out.outcomes) if k not in held] == ref.scores_fp


def test_multi_krum_still_excludes_a_sign_flipped_attacker(setting) -> None:
    spec, w0, val, deltas = setting
    flipped = codec.encode(attacks.sign_flip(deltas[1], scale=10.0))
    attacker = Submission("0x" + "0" * 40, flipped, commit_order=9)  # sorts first
    subs = [*_subs(deltas), attacker]
    # with the harm test (the default), its harm to the validation loss is evidence: flagged
    out = compute_round(_with_rule(spec, name="multi_krum"), w0, subs, val)
    assert out.reasons == [int(Reason.ACCEPTED)] * 5 + [int(Reason.OUTLIER)]
    assert "harmful" in out.outcomes[-1].detail and out.outcomes[-1].score_fp == 0
    # without it, Multi-Krum alone only holds it out: excluded, score 0, not flagged
    rule = {"name": "multi_krum", "harm_ratio": 0.0}
    out = compute_round(_with_rule(spec, **rule), w0, subs, val)
    assert out.reasons == [int(Reason.ACCEPTED)] * 6
    assert "not selected" in out.outcomes[-1].detail and out.outcomes[-1].score_fp == 0
    honest = compute_round(_with_rule(spec, name="norm_bound", harm_ratio=0.0), w0, subs[:5], val)
    assert honest.reasons == [int(Reason.ACCEPTED)] * 5
    assert out.next_model_blob == honest.next_model_blob
