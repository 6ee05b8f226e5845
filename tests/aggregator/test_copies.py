"""Tests for aggregator.rules.copies."""

from __future__ import annotations

import numpy as np

from aggregator.rules.copies import (
    REASON_CLEAN,
    REASON_COPY,
    REASON_REPLAY,
    REASON_ZERO,
    detect_copies,
)


def honest(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return rng.standard_normal(d) + rng.standard_normal((n, d))


def test_reason_codes_are_the_on_chain_values() -> None:
    assert (REASON_CLEAN, REASON_COPY, REASON_REPLAY, REASON_ZERO) == (0, 9, 10, 11)


def test_honest_distinct_updates_are_clean() -> None:
    rng = np.random.default_rng(0)
    x = honest(rng, 12, 5000)
    prev = honest(rng, 6, 5000)
    assert detect_copies(x, prev).tolist() == [0] * 12
    assert detect_copies(x.astype(np.float32)).tolist() == [0] * 12


def test_all_kinds_detected_and_originals_clean() -> None:
    rng = np.random.default_rng(1)
    d = 3000
    base = honest(rng, 5, d)
    previous = honest(rng, 3, d)
    rows = [
        base[0],  # 0 original
        base[1],  # 1 original
        base[0].copy(),  # 2 exact copy of 0
        base[1] + 1e-6 * rng.standard_normal(d),  # 3 perturbed copy of 1
        3.0 * base[2],  # 4 scaled original: comes before its copy
        base[2],  # 5 scaled copy of 4 (x / 3)
        previous[1],  # 6 replay of an earlier round
        np.zeros(d),  # 7 free rider
        1e-5 * base[3],  # 8 near-zero (scaled-down copy is a free rider first)
        base[4],  # 9 clean
    ]
    x = np.vstack(rows)
    reasons = detect_copies(x, previous)
    assert reasons.dtype == np.int64
    assert reasons.tolist() == [0, 0, 9, 9, 0, 9, 10, 11, 11, 0]
    # float32 input, same verdicts
    assert detect_copies(x.astype(np.float32), previous.astype(np.float32)).tolist() == (
        reasons.tolist()
    )


def test_later_row_is_the_copy() -> None:
    rng = np.random.default_rng(2)
    a, b = honest(rng, 2, 500)
    assert detect_copies(np.vstack([a, b, a])).tolist() == [0, 0, 9]
    assert detect_copies(np.vstack([a, a, b])).tolist() == [0, 9, 0]
    # three identical rows: only the first is the original
    assert detect_copies(np.vstack([a, a, a])).tolist() == [0, 9, 9]


def test_negated_or_noisy_copies_are_not_copies() -> None:
    rng = np.random.default_rng(3)
    a, b = honest(rng, 2, 4000)
    noisy = a + 0.1 * np.linalg.norm(a) / np.sqrt(4000) * rng.standard_normal(4000)
    assert detect_copies(np.vstack([a, b, -a, noisy])).tolist() == [0, 0, 0, 0]


def test_precedence_replay_over_copy_and_zero_over_all() -> None:
    rng = np.random.default_rng(4)
    a, b = honest(rng, 2, 800)
    prev = np.vstack([a])
    # two trainers replay the same old update: both are replays, not copy + replay
    assert detect_copies(np.vstack([b, a, a]), prev).tolist() == [0, 10, 10]
    # two zero updates: free riders, not copies
    z = np.zeros(800)
    assert detect_copies(np.vstack([b, z, z]), np.vstack([z])).tolist() == [0, 11, 11]


def test_previous_as_single_vector_and_empty() -> None:
    rng = np.random.default_rng(5)
    x = honest(rng, 3, 100)
    assert detect_copies(x, x[1]).tolist() == [0, 10, 0]
    assert detect_copies(x, np.zeros((0, 100))).tolist() == [0, 0, 0]
    assert detect_copies(np.zeros((0, 100))).shape == (0,)


def test_tolerance_parameters() -> None:
    rng = np.random.default_rng(6)
    a, b = honest(rng, 2, 1000)
    noisy = a + 0.01 * np.linalg.norm(a) / np.sqrt(1000) * rng.standard_normal(1000)
    x = np.vstack([a, b, noisy])
    assert detect_copies(x).tolist() == [0, 0, 9]  # 1 % noise: cosine ~0.99995
    assert detect_copies(x, scale_cos=1.1, rel_tol=1e-3).tolist() == [0, 0, 0]
    assert detect_copies(x, scale_cos=1.1, rel_tol=2e-2).tolist() == [0, 0, 9]


def test_deterministic() -> None:
    rng = np.random.default_rng(7)
    x = honest(rng, 30, 2000).astype(np.float32)
    x[5] = x[2]
    r1 = detect_copies(x, x[:3])
    r2 = detect_copies(x.copy(), x[:3].copy())
    assert np.array_equal(r1, r2)
