"""Tests for aggregator.rules.scoring."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.rules.scoring import (
    exact_shapley,
    leave_one_out,
    loss_gain_alone,
    normalise,
    shapley_monte_carlo,
)


class Counting:
    """Wraps a value function and counts calls per distinct subset."""

    def __init__(self, fn: object) -> None:
        self.fn = fn
        self.calls: list[bytes] = []

    def __call__(self, mask: np.ndarray) -> float:
        self.calls.append(mask.tobytes())
        return float(self.fn(mask))  # type: ignore[operator]


def additive(weights: np.ndarray) -> Counting:
    return Counting(lambda m: float(np.sum(weights[m])))


def glove_game(mask: np.ndarray) -> float:
    """Non-additive: value = number of matched (left, right) pairs; players 0-1 left, 2-4 right."""
    return float(min(mask[:2].sum(), mask[2:].sum()))


def test_loss_gain_alone() -> None:
    g = loss_gain_alone(2.0, np.array([1.5, 2.5, np.nan, np.inf, 2.0, -1.0]))
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [0.5, 0.0, 0.0, 0.0, 0.0, 3.0])


def test_leave_one_out() -> None:
    w = np.array([1.0, -2.0, 0.5, 0.0])
    v = additive(w)
    loo = leave_one_out(v, 4)
    np.testing.assert_array_equal(loo, [1.0, 0.0, 0.5, 0.0])
    assert len(v.calls) == 5
    # redundant players: each alone is worthless to LOO
    np.testing.assert_array_equal(leave_one_out(lambda m: float(m.any()), 3), [0.0, 0.0, 0.0])
    assert leave_one_out(lambda m: 0.0, 0).shape == (0,)


def test_shapley_mc_recovers_additive_values_exactly() -> None:
    w = np.array([3.0, 1.0, 0.25, 2.0, 0.0, 5.0])
    est = shapley_monte_carlo(additive(w), 6, permutations=4, seed=1)
    np.testing.assert_allclose(est, w, rtol=1e-12)


def test_exact_shapley_additive_and_glove() -> None:
    w = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(exact_shapley(additive(w), 3), w)
    phi = exact_shapley(glove_game, 5, clip=False)
    # efficiency: values sum to v(all) - v(empty) = 2
    assert phi.sum() == pytest.approx(2.0)
    # symmetry: left players share, right players share
    assert phi[0] == pytest.approx(phi[1])
    assert phi[2] == pytest.approx(phi[3]) == pytest.approx(phi[4])
    assert phi[0] > phi[2]  # the scarce side is worth more


def test_mc_close_to_exact_on_non_additive_game() -> None:
    exact = exact_shapley(glove_game, 5)
    est = shapley_monte_carlo(glove_game, 5, permutations=400, seed=3)
    np.testing.assert_allclose(est, exact, atol=0.06)


def test_harmful_player_scores_zero() -> None:
    def value(mask: np.ndarray) -> float:
        # player 2 poisons the aggregate: it halves the benefit of the others and costs 1
        base = float(mask[0]) + float(mask[1]) + 0.5 * float(mask[3])
        return base * (0.5 if mask[2] else 1.0) - (1.0 if mask[2] else 0.0)

    mc = shapley_monte_carlo(value, 4, permutations=64, seed=0)
    ex = exact_shapley(value, 4)
    assert mc[2] == 0.0 and ex[2] == 0.0
    assert exact_shapley(value, 4, clip=False)[2] < 0
    assert np.all(mc[[0, 1, 3]] > 0)
    assert leave_one_out(value, 4)[2] == 0.0


def test_mc_caches_subset_values() -> None:
    v = Counting(glove_game)
    shapley_monte_carlo(v, 5, permutations=200, seed=0)
    assert len(v.calls) == len(set(v.calls))  # never re-evaluated
    assert len(v.calls) <= 2**5


def test_mc_truncation() -> None:
    w = np.array([10.0, 1e-9, 1e-9, 1e-9])
    v = additive(w)
    est = shapley_monte_carlo(v, 4, permutations=8, seed=0, truncation_tol=1e-6)
    assert est[0] == pytest.approx(10.0)
    assert np.all(est[1:] <= 1e-9)
    v_full = additive(w)
    shapley_monte_carlo(v_full, 4, permutations=8, seed=0)
    assert len(v.calls) < len(v_full.calls)
    # whole-round truncation: nothing to distribute
    assert shapley_monte_carlo(lambda m: 0.0, 3, truncation_tol=1e-6).tolist() == [0, 0, 0]


def test_mc_is_deterministic_and_seed_dependent() -> None:
    a = shapley_monte_carlo(glove_game, 5, permutations=16, seed=11)
    b = shapley_monte_carlo(glove_game, 5, permutations=16, seed=11)
    c = shapley_monte_carlo(glove_game, 5, permutations=16, seed=12)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_non_finite_value_rejected() -> None:
    with pytest.raises(ValueError):
        shapley_monte_carlo(lambda m: float("nan"), 3)
    with pytest.raises(ValueError):
        leave_one_out(lambda m: float("inf") if m.all() else 0.0, 3)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=6),
    st.integers(0, 2**32 - 1),
)
def test_scores_never_negative(weights: list[float], seed: int) -> None:
    w = np.array(weights)
    n = len(w)

    def value(mask: np.ndarray) -> float:
        # non-additive with interactions, may be negative
        s = float(np.sum(w[mask]))
        return s - 0.1 * s * s

    for scores in (
        shapley_monte_carlo(value, n, permutations=5, seed=seed),
        exact_shapley(value, n),
        leave_one_out(value, n),
        loss_gain_alone(0.0, w),
    ):
        assert np.all(scores >= 0)
        assert np.all(np.isfinite(scores))
    norm = normalise(shapley_monte_carlo(value, n, permutations=5, seed=seed))
    assert np.all(norm >= 0)
    assert norm.sum() == pytest.approx(1.0) or norm.sum() == 0.0


def test_normalise() -> None:
    np.testing.assert_allclose(normalise(np.array([1.0, 3.0, -2.0, np.nan])), [0.25, 0.75, 0, 0])
    assert normalise(np.array([0.0, -1.0])).tolist() == [0.0, 0.0]
    assert normalise(np.zeros(0)).shape == (0,)
