"""Tests for aggregator.rules.fixedpoint."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.rules.fixedpoint import MAX_ROUND_SCORE, SCORE_ONE, from_fixed_point, to_fixed_point


def test_constants() -> None:
    assert SCORE_ONE == 1_000_000
    assert MAX_ROUND_SCORE == 10**12


def test_round_half_even() -> None:
    # 0.5e-6 and 1.5e-6 scale to exactly 0.5 and 1.5 in float64
    assert to_fixed_point(np.array([0.5e-6, 1.5e-6, 2.5e-6 * 1.0000001, 1.0, 0.1234565])) == [
        0,
        2,
        3,
        1_000_000,
        123456,  # product is exactly 123456.5 -> even
    ]
    assert to_fixed_point(np.array([3.5e-6])) == [4]


def test_clipping_and_nan() -> None:
    scores = np.array([-1.0, np.nan, np.inf, -np.inf, 2e6, 1e6])
    assert to_fixed_point(scores) == [0, 0, MAX_ROUND_SCORE, 0, MAX_ROUND_SCORE, MAX_ROUND_SCORE]
    out = to_fixed_point(np.array([0.25]))
    assert type(out[0]) is int


def test_from_fixed_point() -> None:
    back = from_fixed_point([0, 1, 1_000_000, MAX_ROUND_SCORE])
    assert back.dtype == np.float64
    assert back.tolist() == [0.0, 1e-6, 1.0, 1e6]
    assert from_fixed_point([]).shape == (0,)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), max_size=10))
def test_roundtrip_within_half_unit(scores: list[float]) -> None:
    s = np.array(scores, dtype=np.float64)
    ints = to_fixed_point(s)
    assert all(0 <= i <= MAX_ROUND_SCORE for i in ints)
    assert np.all(np.abs(from_fixed_point(ints) - s) <= 0.5e-6 + 1e-9 * s)
    assert to_fixed_point(from_fixed_point(ints)) == ints
