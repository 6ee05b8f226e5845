"""The adaptive collusion attacks (trainer_client.collusion) and the benchmark that plays them
against the round computation (`scripts/bench_attacks.py --adaptive`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from trainer_client.collusion import (
    Knowledge,
    add_jitter,
    alie,
    alie_z,
    craft,
    ipm,
    max_gamma,
    min_max,
    min_sum,
    replay_aggregate,
    std_perturbation,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def benign() -> np.ndarray:
    """Six colluders' honest updates: a shared direction plus per-shard spread."""
    rng = np.random.default_rng(7)
    d = 300
    common = rng.standard_normal(d)
    return common + 0.5 * rng.standard_normal((6, d)) * rng.uniform(0.2, 2.0, size=d)


def _sq_dists(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.square(x - v).sum(axis=1)


def _pairwise(x: np.ndarray) -> np.ndarray:
    return np.array([[float(np.square(a - b).sum()) for b in x] for a in x])


def test_alie_z_follows_the_papers_formula() -> None:
    # n = 20, f = 6: s = floor(20/2 + 1) - 6 = 5, z = Φ⁻¹((20 - 5) / 20) = Φ⁻¹(0.75)
    assert alie_z(20, 6) == pytest.approx(0.6744897501960817, abs=1e-12)
    assert alie_z(20, 6) == pytest.approx(NormalDist().inv_cdf(0.75), abs=1e-12)
    # the paper's running example, n = 50 and f = 24: s = 2, z = Φ⁻¹(48/50) ≈ 1.75
    assert alie_z(50, 24) == pytest.approx(1.7506860712521692, abs=1e-9)
    # fewer attackers need more honest workers on their side: a smaller z
    assert alie_z(20, 2) < alie_z(20, 6)
    with pytest.raises(ValueError, match="ALIE"):
        alie_z(20, 11)  # a majority: the formula's quantile would be Φ⁻¹(1)


def test_alie_is_mean_minus_z_sample_std(benign: np.ndarray) -> None:
    z = alie_z(20, 6)
    crafted = alie(benign, z)
    mu, sd = benign.mean(axis=0), benign.std(axis=0, ddof=1)
    np.testing.assert_allclose(crafted, mu - z * sd, rtol=1e-12)
    assert np.all(crafted <= mu) and np.all(crafted >= mu - sd)  # z < 1: within one σ


def test_ipm_points_against_the_mean(benign: np.ndarray) -> None:
    mu = benign.mean(axis=0)
    crafted = ipm(benign, eps=0.5)
    cos = float(crafted @ mu) / (np.linalg.norm(crafted) * np.linalg.norm(mu))
    assert cos == pytest.approx(-1.0, abs=1e-12)
    assert np.linalg.norm(crafted) == pytest.approx(0.5 * np.linalg.norm(mu), rel=1e-12)
    assert float(crafted @ mu) < 0  # the inner product the attack manipulates


def test_std_perturbation_is_unit_and_against_the_spread(benign: np.ndarray) -> None:
    p = std_perturbation(benign)
    assert np.linalg.norm(p) == pytest.approx(1.0, abs=1e-12)
    assert np.all(p <= 0)
    sd = benign.std(axis=0, ddof=1)
    assert float(p @ sd) == pytest.approx(-np.linalg.norm(sd), rel=1e-12)


def test_min_max_meets_its_bound_with_the_largest_gamma(benign: np.ndarray) -> None:
    crafted, gamma = min_max(benign)
    bound = _pairwise(benign).max()
    p = std_perturbation(benign)
    mu = benign.mean(axis=0)
    np.testing.assert_allclose(crafted, mu + gamma * p, rtol=1e-12)
    assert gamma > 0
    assert _sq_dists(benign, crafted).max() <= bound
    # maximal: a γ 0.01% larger breaks the bound
    assert _sq_dists(benign, mu + gamma * 1.0001 * p).max() > bound


def test_min_sum_matches_its_closed_form(benign: np.ndarray) -> None:
    crafted, gamma = min_sum(benign)
    mu = benign.mean(axis=0)
    bound = _pairwise(benign).sum(axis=1).max()
    assert _sq_dists(benign, crafted).sum() <= bound
    # Σ‖μ + γp − x_i‖² = Σ‖μ − x_i‖² + kγ² for a unit p: the largest γ in closed form
    exact = np.sqrt((bound - _sq_dists(benign, mu).sum()) / len(benign))
    assert gamma == pytest.approx(exact, rel=1e-5)
    assert gamma <= exact


def test_max_gamma_finds_a_threshold_and_respects_feasible_upper() -> None:
    assert max_gamma(lambda g: g <= 3.7, upper=100.0) == pytest.approx(3.7, rel=1e-5)
    assert max_gamma(lambda g: g <= 3.7, upper=100.0) <= 3.7
    assert max_gamma(lambda g: True, upper=5.0) == 5.0


def test_jitter_has_the_asked_relative_norm() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal(1000) * 3.0
    for rel in (0.05, 0.2):
        out = add_jitter(v, rel, rng)
        assert np.linalg.norm(out - v) == pytest.approx(rel * np.linalg.norm(v), rel=1e-9)
    np.testing.assert_array_equal(add_jitter(v, 0.0, rng), v)


def test_each_colluder_jitters_independently(benign: np.ndarray) -> None:
    subs = craft("alie", Knowledge(n=20, own=benign), 6, np.random.default_rng(1), jitter=0.05)
    shared = alie(benign, alie_z(20, 6))
    assert len(subs) == 6
    for s in subs:
        assert np.linalg.norm(s - shared) == pytest.approx(0.05 * np.linalg.norm(shared))
    # independent noise in 300 dimensions: two colluders differ by about √2 × the jitter
    gap = np.linalg.norm(subs[0] - subs[1]) / np.linalg.norm(shared)
    assert 0.05 < gap < 0.1


def test_free_riders_copy_what_is_public(benign: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    # round 1: nothing public to copy, the near-zero fallback
    first = craft("noisy_copy", Knowledge(n=20), 6, rng, d=300)
    assert max(np.linalg.norm(v) for v in first) < 1e-3
    # later rounds: 0.9 × one of the peers' previous reveals, plus 5% of that as jitter
    subs = craft("noisy_copy", Knowledge(n=20, previous_others=benign), 6, rng)
    for s in subs:
        gaps = [np.linalg.norm(s - 0.9 * row) / np.linalg.norm(0.9 * row) for row in benign]
        assert min(gaps) == pytest.approx(0.05, rel=1e-9)


def test_replay_aggregate_rescales_the_last_step(benign: np.ndarray) -> None:
    step = np.arange(300, dtype=np.float64) - 100
    target = float(np.median(np.linalg.norm(benign, axis=1)))
    np.testing.assert_allclose(np.linalg.norm(replay_aggregate(step, target)), target, rtol=1e-12)
    k = Knowledge(n=20, previous_others=benign, previous_step=step)
    (sub,) = craft("replay_aggregate", k, 1, np.random.default_rng(3), jitter=0.0)
    np.testing.assert_allclose(sub, step * target / np.linalg.norm(step), rtol=1e-12)


def test_omniscient_attacks_use_the_current_honest_updates(benign: np.ndarray) -> None:
    honest = np.random.default_rng(5).standard_normal((14, benign.shape[1])) + 1.0
    k = Knowledge(n=20, own=benign, current_honest=honest)
    (sub,) = craft("alie_omniscient", k, 1, np.random.default_rng(4), jitter=0.0)
    # the statistics are the honest ones, f = n − honest = 6
    np.testing.assert_allclose(sub, alie(honest, alie_z(20, 6)), rtol=1e-12)
    (mm,) = craft("min_max_omniscient", k, 1, np.random.default_rng(4), jitter=0.0)
    np.testing.assert_allclose(mm, min_max(honest)[0], rtol=1e-12)
    assert np.linalg.norm(mm - min_max(benign)[0]) > 1.0


def test_adaptive_quick_bench_emits_the_schema() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "scripts/bench_attacks.py",
            "--adaptive",
            "--quick",
            "--json",
            "--attacks",
            "min_max,withhold",
        ],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # 2 cores: one thread each is ~10x faster
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert any("PASS" in line or "MISS" in line for line in lines[:-1])
    result = json.loads(lines[-1])
    assert list(result["datasets"]) == ["digits"]
    d = result["datasets"]["digits"]
    assert 0.0 <= d["honest_acc"] <= 1.0
    assert set(d["attacks"]) == {"min_max", "withhold"}
    for name, a in d["attacks"].items():
        assert a["kind"] == "poisoner", name
        for key in ("acc", "recall", "false_flag_rate", "attacker_reward_share"):
            assert isinstance(a[key], float) and 0.0 <= a[key] <= 1.0, (name, key)
    w = d["attacks"]["withhold"]
    # a withheld reveal is missing (reason 1): counted in recall, scores 0, never slashed here
    assert w["recall"] >= w["withheld_rate"]
    assert w["zero_score_rate"] >= w["withheld_rate"]
    assert d["attacks"]["min_max"]["withheld_rate"] == 0.0
