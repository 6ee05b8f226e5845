"""Local differential privacy for trainers (backend.core.privacy): the job's [privacy] table,
the ε claim in an update's metadata (bounded on decode), DP-SGD's accounting, and a DP job on
the embedded market with an attacker: honest DP trainers are never flagged and get paid, the
attacker is flagged and unpaid, and ε is reported per trainer in the round, the owner's status
and the audit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from aggregator.round.compute import Submission, compute_round
from backend.audit.verify import verify_job
from backend.core.compression import decode_update_with_metadata, encode_update
from backend.core.datasets import load_digits_dataset
from backend.core.errors import ConfigError, Reason, UpdateRejected
from backend.core.jobspec import JobSpec, PrivacySpec, TrainingSpec, explain_validation_error
from backend.core.models import build_model, get_weights, template_of
from backend.core.privacy import (
    PrivacyClaim,
    budget_note,
    claim_from_metadata,
    epsilon_after,
    plan_dp,
    train_local_dp,
)
from backend.core.training import pseudo_gradient
from backend.owner.lifecycle import job_status
from backend.simulation.demo import DemoConfig, run_demo

CLAIM = PrivacyClaim(3.25, 1e-5, 1.1, 1.0)


def test_a_job_without_privacy_keeps_its_canonical_bytes() -> None:
    assert b"privacy" not in JobSpec().to_bytes()
    dp = JobSpec(privacy=PrivacySpec(target_epsilon=4))
    assert JobSpec.from_bytes(dp.to_bytes()) == dp


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"clip_norm": 1.0}, "exactly one of noise_multiplier and target_epsilon"),
        ({"noise_multiplier": 1, "target_epsilon": 2}, "exactly one of"),
        ({"noise_multiplier": 1, "clipnorm": 1}, "unknown key 'clipnorm' in [privacy]"),
        ({"target_epsilon": 4, "delta": 1.5}, "privacy.delta"),
    ],
)
def test_privacy_table_errors_are_one_line(table: dict, says: str) -> None:
    with pytest.raises(ValidationError) as exc:
        JobSpec.model_validate({"privacy": table})
    line = explain_validation_error(exc.value, JobSpec, "job.toml")
    assert says in line and "\n" not in line


@pytest.mark.parametrize("codec", ["fp32", "int8", "topk"])
def test_the_claim_travels_in_the_update_header(codec: str) -> None:
    spec = JobSpec()
    template = template_of(spec.model)
    w = get_weights(build_model(spec.model))
    delta = {k: np.full_like(v, 0.01) for k, v in w.items()}
    blob, _ = encode_update(delta, template, codec, metadata=CLAIM.to_metadata())
    _, meta = decode_update_with_metadata(blob, template, codec)
    assert claim_from_metadata(meta) == CLAIM
    plain, _ = encode_update(delta, template, codec)
    assert claim_from_metadata(decode_update_with_metadata(plain, template, codec)[1]) is None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"dp_epsilon": "nan"}, "not a plain non-negative decimal"),
        ({"dp_epsilon": "-1.0"}, "not a plain non-negative decimal"),
        ({"dp_epsilon": "-0.0"}, "not a plain non-negative decimal"),
        ({"dp_epsilon": "1e999"}, "not finite"),
        ({"dp_epsilon": "2e300"}, "above 1e+300"),
        # what float() takes but another language's parser might not: one grammar for all
        ({"dp_epsilon": "\u0663"}, "not a plain"),
        ({"dp_epsilon": "1_0"}, "not a plain"),
        ({"dp_epsilon": " 2 "}, "not a plain"),
        ({"dp_epsilon": "+5E0"}, "not a plain"),
        ({"dp_delta": "1.0"}, "outside (0, 1)"),
        ({"dp_noise_multiplier": "0"}, "outside"),
        ({"dp_clip_norm": "1" * 40}, "characters long"),
        ({"dp_epsilon": "lots"}, "not a plain"),
    ],
)
def test_hostile_claims_are_one_rejection(change: dict, says: str) -> None:
    with pytest.raises(UpdateRejected) as exc:
        claim_from_metadata(CLAIM.to_metadata() | change)
    assert exc.value.reason == Reason.UNDECODABLE and says in exc.value.detail
    partial = {k: v for k, v in CLAIM.to_metadata().items() if k != "dp_delta"}
    with pytest.raises(UpdateRejected, match="dp_delta missing"):
        claim_from_metadata(partial)


def test_a_malformed_claim_rejects_the_update_in_the_round() -> None:
    spec = JobSpec()
    template = template_of(spec.model)
    w = get_weights(build_model(spec.model))
    delta = {k: np.full_like(v, 0.01) for k, v in w.items()}
    good, _ = encode_update(delta, template, "fp32", metadata=CLAIM.to_metadata())
    bad, _ = encode_update(delta, template, "fp32", metadata={"dp_epsilon": "inf"})
    data = load_digits_dataset()
    val = data.subset(np.arange(100))
    subs = [Submission("0x" + "1" * 40, good), Submission("0x" + "2" * 40, bad, commit_order=1)]
    out = compute_round(spec, w, subs, val)
    assert out.outcomes[0].epsilon == 3.25
    assert (
        out.outcomes[1].reason == Reason.UNDECODABLE and "privacy claim" in out.outcomes[1].detail
    )


def test_budget_notes() -> None:
    asked = PrivacySpec(target_epsilon=3.0)
    assert budget_note(CLAIM, None) == ""
    assert budget_note(None, asked) == "no privacy claim"
    assert budget_note(CLAIM, asked) == "ε 3.25 > target 3"
    assert budget_note(CLAIM, PrivacySpec(target_epsilon=4.0)) == ""
    assert "noise 1.1 < 2" in budget_note(CLAIM, PrivacySpec(noise_multiplier=2.0))


def test_the_target_is_the_whole_jobs_budget() -> None:
    spec = JobSpec()
    plan = plan_dp(PrivacySpec(target_epsilon=4.0), spec.training, rows=32, rounds=3)  # q = 1: fast
    spent = [epsilon_after(plan, r) for r in (1, 2, 3)]
    assert spent[0] < spent[1] < spent[2] <= 4.0
    assert spent[2] > 3.9  # the noise spends (about) all of it by the last round


def test_dp_training_is_reproducible_only_with_a_seed() -> None:
    spec = JobSpec()
    w = get_weights(build_model(spec.model))
    data = load_digits_dataset().subset(np.arange(96))
    privacy = PrivacySpec(noise_multiplier=1.0)
    run = {"rounds": 2, "round_": 1}
    a, _, claim = train_local_dp(spec.model, w, data, spec.training, privacy, seed=5, **run)
    b, _, _ = train_local_dp(spec.model, w, data, spec.training, privacy, seed=5, **run)
    c, _, _ = train_local_dp(spec.model, w, data, spec.training, privacy, **run)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)  # secret entropy: unpredictable noise
    assert claim.noise_multiplier == 1.0 and claim.epsilon > 0
    assert any(np.abs(v).max() > 0 for v in pseudo_gradient(w, a).values())


def test_a_dp_job_with_an_attacker() -> None:
    """Honest DP trainers (ε = 4 for the job) are never flagged and get paid; the sign-flipping
    attacker is flagged every round and unpaid; ε is reported per trainer per round."""
    cfg = DemoConfig(trainers=5, attackers=1, rounds=2, privacy=PrivacySpec(target_epsilon=4))
    result = run_demo(cfg)
    for report in result.rounds:
        honest, attacker = report.outcome.outcomes[:4], report.outcome.outcomes[4]
        assert all(o.reason == Reason.ACCEPTED for o in honest), [o.detail for o in honest]
        assert attacker.reason == Reason.OUTLIER
        assert all(o.epsilon is not None and 0 < o.epsilon <= 4 for o in report.outcome.outcomes)
    assert (
        result.rounds[1].outcome.outcomes[0].epsilon > result.rounds[0].outcome.outcomes[0].epsilon
    )
    trainers = result.summary["trainers"]
    assert all(t["reward_wei"] > 0 and t["flagged_rounds"] == 0 for t in trainers[:4])
    assert trainers[4]["reward_wei"] == 0 and trainers[4]["flagged_rounds"] == 2

    status = job_status(result.market, result.market.job(1), result.store)
    for p in status["participants"]:
        assert len(p["epsilon_by_round"]) == 2 and 3.9 < p["epsilon"] <= 4 and p["privacy"] == ""
    report = verify_job(result.market, result.store, 1)
    assert report.ok
    assert [r.epsilon for r in report.rounds] == [
        [o.epsilon for o in r.outcome.outcomes] for r in result.rounds
    ]


def test_a_huge_or_infinite_epsilon_is_a_valid_claim_never_a_slashable_one() -> None:
    """An owner's job can make an honest trainer's accounted ε enormous (little noise, many
    steps); its claim must still decode, or the owner could get honest DP trainers slashed."""
    big = PrivacyClaim(2.6e6, 1e-5, 0.3, 1.0)
    assert claim_from_metadata(big.to_metadata()) == big
    endless = PrivacyClaim(float("inf"), 1e-5, 0.3, 1.0)
    assert claim_from_metadata(endless.to_metadata()).epsilon == 1e300


def test_an_unreachable_target_is_one_clear_error_and_the_spec_has_floors() -> None:
    with pytest.raises(ConfigError, match="cannot be met by DP-SGD"):
        plan_dp(PrivacySpec(target_epsilon=0.1), TrainingSpec(batch_size=64), rows=50, rounds=50)
    for bad in ({"target_epsilon": 0.01}, {"noise_multiplier": 0.05}):
        with pytest.raises(ValidationError):
            PrivacySpec(**bad)


def test_dp_sgd_trains_charlm_with_per_row_gradients() -> None:
    """Opacus's per-sample gradients need the batch first on every layer's input: charlm's
    position embedding is looked up per row, so each row's gradient is clipped on its own."""
    from opacus import GradSampleModule

    from backend.core.datasets import Dataset
    from backend.core.models import ModelSpec, batch_loss

    spec = ModelSpec(family="charlm", input_dim=8, num_classes=256, width=16, depth=1, heads=2)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 8)).astype(np.float32)
    y = rng.integers(0, 256, 5)
    private = GradSampleModule(build_model(spec))
    batch_loss(spec, private, torch.as_tensor(x), torch.as_tensor(y)).backward()
    assert private._module.pos.weight.grad_sample.shape == (5, 8, 16)
    w, loss, claim = train_local_dp(
        spec,
        get_weights(build_model(spec)),
        Dataset(x, y),
        TrainingSpec(batch_size=2),
        PrivacySpec(noise_multiplier=1.0),
        rounds=2,
        round_=1,
        seed=0,
    )
    assert np.isfinite(loss) and claim.epsilon > 0
    assert all(np.isfinite(v).all() for v in w.values())


def test_owner_status_notes_a_cumulative_epsilon_that_falls() -> None:
    """ε after round r covers rounds 1..r: a later claim below an earlier one understates it."""
    from backend.owner.lifecycle import _privacy_fields

    asked = PrivacySpec(target_epsilon=8.0)
    rising = _privacy_fields([PrivacyClaim(2.0, 1e-5, 1.0, 1.0), CLAIM], asked)
    assert rising["privacy"] == "" and rising["epsilon"] == CLAIM.epsilon
    falling = _privacy_fields([CLAIM, PrivacyClaim(1.0, 1e-5, 1.0, 1.0)], asked)
    assert falling["privacy"] == "ε fell from 3.25 to 1"
