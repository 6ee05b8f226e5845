"""Tests for the robust rules (aggregator.rules.screening and one module per rule)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.rules.cosine import cosine_to_centre_flags, loo_median_cosines
from aggregator.rules.kernels import gram64, norms64, pairwise_sq_distances
from aggregator.rules.median import coordinate_median
from aggregator.rules.multi_krum import krum_scores, multi_krum_aggregate, multi_krum_select
from aggregator.rules.norm_bound import norm_bound_flags
from aggregator.rules.screening import OutlierRule, detect_outliers, rule_from_dict, screen_updates
from aggregator.rules.trimmed_mean import trimmed_mean


def brute_sq_dists(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = float(np.sum((x[i] - x[j]) ** 2))
    return out


def flower_reference_select(x: np.ndarray, num_malicious: int, to_keep: int) -> np.ndarray:
    """Flower's aggregate_krum selection (flwr 1.x), re-implemented line by line.

    Flower uses the default (unstable) argsort; stable sorts here pin the tie-break to the
    index, which is our documented contract.
    """
    dist = brute_sq_dists(x)
    n = len(dist)
    num_closest = max(1, n - num_malicious - 2)
    scores = []
    for i in range(n):
        closest = np.argsort(dist[i], kind="stable")[1 : num_closest + 1]
        scores.append(np.sum(dist[i, closest]))
    scores_arr = np.array(scores)
    if to_keep > 0:
        # Flower: np.argsort(scores)[::-1][len(scores) - to_keep :] -- the same set as the
        # first to_keep entries of the ascending argsort
        best = np.argsort(scores_arr, kind="stable")[::-1][len(scores) - to_keep :]
        return np.sort(best)
    return np.array([int(np.argmin(scores_arr))])


def honest_round(
    rng: np.random.Generator, n: int, d: int, noise: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    g = rng.standard_normal(d)
    x = g[None, :] + noise * rng.standard_normal((n, d))
    return x, g


# ----------------------------------------------------------------- distances


@pytest.mark.parametrize("seed", range(3))
def test_pairwise_sq_distances_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((7, 50)) * rng.uniform(0.1, 10, size=(7, 1))
    d2 = pairwise_sq_distances(x)
    assert d2.dtype == np.float64
    np.testing.assert_allclose(d2, brute_sq_dists(x), rtol=1e-10, atol=1e-9)
    assert np.all(np.diag(d2) == 0.0)
    assert np.array_equal(d2, d2.T)
    assert np.all(d2 >= 0)


def test_pairwise_sq_distances_float32_path() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 4000)).astype(np.float32)
    d2 = pairwise_sq_distances(x)
    assert d2.dtype == np.float64
    np.testing.assert_allclose(d2, brute_sq_dists(x), rtol=1e-4)
    assert np.all(np.diag(d2) == 0.0)


def test_pairwise_sq_distances_identical_rows_clip_to_zero() -> None:
    rng = np.random.default_rng(2)
    r = rng.standard_normal(300)
    x = np.stack([r, r, r * 1.0000001, -r])
    d2 = pairwise_sq_distances(x)
    assert np.all(d2 >= 0)
    assert d2[0, 1] <= 1e-9 * float(r @ r)


def test_gram64_matches_float64_product() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3000)).astype(np.float32)
    y = rng.standard_normal((3, 3000)).astype(np.float32)
    np.testing.assert_allclose(
        gram64(x, y), x.astype(np.float64) @ y.astype(np.float64).T, rtol=1e-12, atol=1e-9
    )


# ----------------------------------------------------------------- krum


def test_krum_scores_by_hand() -> None:
    x = np.array([[0.0], [1.0], [3.0], [10.0]])
    d2 = pairwise_sq_distances(x)
    # n=4, f=0 -> 2 nearest neighbours
    np.testing.assert_array_equal(krum_scores(d2, 0), [1 + 9, 1 + 4, 4 + 9, 49 + 81])
    # n=4, f=1 -> max(1, 1) = 1 nearest neighbour
    np.testing.assert_array_equal(krum_scores(d2, 1), [1, 1, 4, 49])
    # tiny n: n=1 -> score 0
    assert krum_scores(np.zeros((1, 1)), 1).tolist() == [0.0]


@pytest.mark.parametrize("seed", range(12))
def test_multi_krum_select_equals_flower_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 14))
    d = int(rng.integers(1, 20))
    x = rng.standard_normal((n, d))
    if seed % 3 == 0:  # quantised values -> many tied distances and scores
        x = np.round(x)
    if seed % 4 == 1:  # duplicated rows -> zero distances off the diagonal
        x[1] = x[0]
    f = int(rng.integers(0, n))
    for to_keep in (0, 1, max(1, n - f), n):
        ours = multi_krum_select(x, f, to_keep)
        ref = flower_reference_select(x, f, to_keep)
        assert np.array_equal(ours, ref), (n, d, f, to_keep)


def test_multi_krum_ties_broken_by_index() -> None:
    # four points on the corners of a square: all krum scores equal
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert multi_krum_select(x, 0, 2).tolist() == [0, 1]
    assert multi_krum_select(x, 0, 0).tolist() == [0]


def test_multi_krum_against_flower_if_installed() -> None:
    agg = pytest.importorskip("flwr.server.strategy.aggregate")
    rng = np.random.default_rng(7)
    x, _ = honest_round(rng, 12, 200)
    x[3] *= -8.0
    x[9] = 5.0 * rng.standard_normal(200)
    x = x.astype(np.float32)
    results = [([x[i]], 1) for i in range(len(x))]
    for to_keep in (0, 5, 10):
        flower = agg.aggregate_krum(results, 2, to_keep)[0]
        idx, mean = multi_krum_aggregate(x, 2, to_keep)
        np.testing.assert_allclose(mean, flower, rtol=1e-5, atol=1e-6)
        if to_keep:
            assert 3 not in idx and 9 not in idx


def test_multi_krum_aggregate_is_mean_of_selected() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((9, 100)).astype(np.float32)
    idx, mean = multi_krum_aggregate(x, 2, 6)
    assert mean.dtype == np.float64
    assert len(idx) == 6
    np.testing.assert_allclose(mean, x[idx].astype(np.float64).mean(axis=0), rtol=1e-12)


# ----------------------------------------------------------------- Flower's own cases

# Ported from Flower (github.com/adap/flower, framework/py/flwr/server/strategy/krum_test.py
# and multikrum_test.py, both ``test_aggregate_fit``): three clients, float32 weights of four
# equal values, ``num_malicious_clients=1``.  Krum keeps the client at 0.7 (index 1);
# Multi-Krum with ``num_clients_to_keep=2`` averages 0.2 and 0.5 into 0.35 and drops 1.0.
FLOWER_CASES = [
    # values of the three clients, num_malicious, to_keep, expected selection, aggregate
    pytest.param((0.2, 0.7, 1.0), 1, 0, [1], 0.7, id="krum_test"),
    pytest.param((0.2, 0.5, 1.0), 1, 2, [0, 1], 0.35, id="multikrum_test"),
]


@pytest.mark.parametrize(("values", "f", "to_keep", "selected", "aggregate"), FLOWER_CASES)
def test_flower_krum_cases(
    values: tuple[float, ...], f: int, to_keep: int, selected: list[int], aggregate: float
) -> None:
    x = np.array([[v] * 4 for v in values], dtype=np.float32)
    idx, mean = multi_krum_aggregate(x, f, to_keep)
    assert idx.tolist() == selected
    # Flower asserts equality of float32 arrays; our mean is float64 of the float32 rows
    assert np.array_equal(mean.astype(np.float32), np.full(4, aggregate, dtype=np.float32))


def _flower_rows_on_shared(
    values: tuple[float, ...], shared: np.ndarray, scale: float
) -> np.ndarray:
    """Flower's clients as offsets ``scale * value`` on top of one large shared component."""
    return np.stack([shared + scale * v for v in values]).astype(np.float32)


SHARED_COMPONENTS = [
    # (shared component, offset scale): Flower aggregates full weights, not deltas, so every
    # row carries the global model; the offsets are scaled so the distances are ~1e-5
    pytest.param(lambda: np.full(4, 200.0), 7.5e-3, id="4 weights at 200"),
    pytest.param(lambda: np.full(4, 1000.0), 7.5e-3, id="4 weights at 1000"),
    pytest.param(
        lambda: np.random.default_rng(0).standard_normal(100_000), 3e-5, id="100k weights"
    ),
]


@pytest.mark.parametrize(("values", "f", "to_keep", "selected", "aggregate"), FLOWER_CASES)
@pytest.mark.parametrize(("make_shared", "scale"), SHARED_COMPONENTS)
def test_flower_krum_cases_with_a_large_shared_component(
    values: tuple[float, ...],
    f: int,
    to_keep: int,
    selected: list[int],
    aggregate: float,
    make_shared,
    scale: float,
) -> None:
    # Regression: the float32 Gram trick rounded these distances to 0 or 0.0156 (one ulp of
    # |row|^2) instead of ~2e-5, and Krum then kept the malicious row.
    shared = make_shared()
    x = _flower_rows_on_shared(values, shared, scale)
    exact = brute_sq_dists(x)  # float64 differences of the float32 rows: exact to ~1e-16
    assert 1e-6 < exact[0, 1] < 1e-3
    np.testing.assert_allclose(pairwise_sq_distances(x), exact, rtol=1e-5, atol=0.0)
    assert flower_reference_select(x, f, to_keep).tolist() == selected
    idx, mean = multi_krum_aggregate(x, f, to_keep)
    assert idx.tolist() == selected
    ulp = float(np.spacing(np.float32(np.abs(shared).max())))
    np.testing.assert_allclose(mean - shared, scale * aggregate, rtol=0.0, atol=2 * ulp)


# ----------------------------------------------------------------- centres


def test_coordinate_median_and_trimmed_mean() -> None:
    x = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, -1000.0], [4.0, 40.0]])
    np.testing.assert_array_equal(coordinate_median(x), [3.0, 20.0])
    # beta=0.2, n=5 -> trim one each end
    np.testing.assert_allclose(trimmed_mean(x, 0.2), [3.0, 20.0])
    np.testing.assert_allclose(trimmed_mean(x, 0.0), x.mean(axis=0))
    # 0.29 * 100 must trim 29, not 28
    y = np.arange(100, dtype=np.float64)[:, None]
    assert trimmed_mean(y, 0.29)[0] == pytest.approx(np.arange(29, 71).mean())


def test_coordinate_median_float32_even_n_is_exact_float64() -> None:
    x = np.array([[1.0], [np.float32(1.0) + np.float32(2.0**-23)]], dtype=np.float32)
    med = coordinate_median(x)
    assert med.dtype == np.float64
    assert med[0] == (1.0 + (1.0 + 2.0**-23)) / 2.0


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(1, 6),
    st.floats(0.0, 0.49),
    st.integers(0, 2**31 - 1),
)
def test_trimmed_mean_within_coordinate_range(n: int, d: int, beta: float, seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal((n, d))
    tm = trimmed_mean(x, beta)
    assert np.all(tm >= x.min(axis=0) - 1e-12)
    assert np.all(tm <= x.max(axis=0) + 1e-12)


# ----------------------------------------------------------------- flags and rules


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 11])
def test_loo_median_cosines_match_brute_force(n: int) -> None:
    rng = np.random.default_rng(n)
    x = np.round(rng.standard_normal((n, 41)), 1)  # rounding -> tied column values
    x[0, :5] = x[1, :5]
    got = loo_median_cosines(x.astype(np.float32))
    ref = []
    for i in range(n):
        c = np.median(np.delete(x, i, axis=0), axis=0)
        ref.append(x[i] @ c / (np.linalg.norm(x[i]) * np.linalg.norm(c)))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


def test_loo_cosine_removes_self_influence() -> None:
    # a random vector of honest norm is visibly correlated with a median that includes it
    # (n=11), but not with the median of the others
    rng = np.random.default_rng(5)
    d = 20000
    x = rng.standard_normal(d) + rng.standard_normal((11, d))
    z = rng.standard_normal(d)
    x[8] = z * np.linalg.norm(x[0]) / np.linalg.norm(z)
    med = coordinate_median(x)
    with_self = x[8] @ med / (np.linalg.norm(x[8]) * np.linalg.norm(med))
    assert with_self > 0.05
    assert abs(loo_median_cosines(x)[8]) < 0.02


def test_norm_and_cosine_flags() -> None:
    rng = np.random.default_rng(4)
    x, _ = honest_round(rng, 8, 500)
    x[2] *= 10.0
    x[5] = -x[5]
    assert np.flatnonzero(norm_bound_flags(x, 3.0)).tolist() == [2]
    assert np.flatnonzero(cosine_to_centre_flags(x, 0.1)).tolist() == [5]
    # explicit centre pointing the other way flags the honest ones instead
    centre = -coordinate_median(x)
    assert cosine_to_centre_flags(x, 0.1, centre).sum() == 7
    # zero centre -> no direction -> nothing flagged
    assert not cosine_to_centre_flags(x, 0.1, np.zeros(500)).any()


def test_cosine_norm_catches_flip_and_noise_but_no_honest() -> None:
    rng = np.random.default_rng(5)
    d = 2000
    honest, _ = honest_round(rng, 9, d, noise=1.0)
    flipped = -4.0 * honest[0]
    noise = rng.standard_normal(d)
    noise *= np.linalg.norm(honest[1]) / np.linalg.norm(noise)
    x = np.vstack([honest[:4], flipped, honest[4:7], noise, honest[7:]]).astype(np.float32)
    mask = detect_outliers(x, OutlierRule("cosine_norm"))
    assert np.flatnonzero(mask).tolist() == [4, 8]
    # norm_bound alone misses the same-norm noise; cosine alone catches both
    assert not detect_outliers(x, OutlierRule("norm_bound"))[8]
    assert np.flatnonzero(detect_outliers(x, OutlierRule("cosine"))).tolist() == [4, 8]


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "multi_krum"])
def test_distance_rules_flag_far_update(name: str) -> None:
    rng = np.random.default_rng(6)
    x, _ = honest_round(rng, 10, 300, noise=0.5)
    x[6] = x[6] + 50.0
    mask = detect_outliers(x, OutlierRule(name, num_malicious=1))
    assert np.flatnonzero(mask).tolist() == [6]


def test_small_rounds_never_flag_everyone() -> None:
    rng = np.random.default_rng(9)
    one = rng.standard_normal((1, 10))
    two = np.vstack([one[0], -one[0]])
    for name in ("multi_krum", "median", "trimmed_mean", "norm_bound", "cosine", "cosine_norm"):
        rule = OutlierRule(name)  # type: ignore[arg-type]
        assert detect_outliers(one, rule).tolist() == [False]
        assert detect_outliers(two, rule).tolist() == [False, False]
        assert detect_outliers(np.zeros((0, 10)), rule).shape == (0,)
    # with an explicit centre the cosine rule works for n=2
    mask = detect_outliers(two, OutlierRule("cosine"), centre=one[0])
    assert mask.tolist() == [False, True]


def test_all_flagged_guard() -> None:
    # orthogonal updates: cosine to the (zero-ish) median is low for everybody
    x = np.eye(5) * np.arange(1, 6)[:, None]
    assert not detect_outliers(x, OutlierRule("cosine", min_cosine=0.99)).any()


def test_rule_dict_roundtrip_and_validation() -> None:
    rule = OutlierRule("multi_krum", num_malicious=2, to_keep=5, beta=0.2)
    d = rule.to_dict()
    assert d["name"] == "multi_krum" and d["to_keep"] == 5
    assert rule_from_dict(d) == rule
    assert rule_from_dict({"name": "median", "median_dist_ratio": 4}) == OutlierRule(
        "median", median_dist_ratio=4.0
    )
    assert rule_from_dict({"name": "median", "num_malicious": 2.0}).num_malicious == 2
    with pytest.raises(ValueError):
        rule_from_dict({"name": "bogus"})
    with pytest.raises(ValueError):
        rule_from_dict({"name": "median", "extra": 1})
    with pytest.raises(ValueError):
        rule_from_dict({"name": "median", "num_malicious": 1.5})
    with pytest.raises(ValueError):
        OutlierRule("trimmed_mean", beta=0.5)


def test_detection_is_deterministic() -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((20, 1000)).astype(np.float32)
    for name in ("multi_krum", "median", "trimmed_mean", "cosine_norm"):
        rule = OutlierRule(name)  # type: ignore[arg-type]
        assert np.array_equal(detect_outliers(x, rule), detect_outliers(x.copy(), rule))
    assert np.array_equal(pairwise_sq_distances(x), pairwise_sq_distances(x.copy()))


def test_float32_paths_make_no_full_size_copies() -> None:
    import tracemalloc

    rng = np.random.default_rng(11)
    x = rng.standard_normal((20, 200_000), dtype=np.float32)  # 16 MB
    for fn in (
        lambda: pairwise_sq_distances(x),
        lambda: multi_krum_aggregate(x, 2, 15),
    ):
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # float64 result vector (1.6 MB) + mean accumulator, never an n x d copy
        assert peak < 0.25 * x.nbytes, peak


def test_cosine_norm_with_three_updates_flags_only_the_scaled_sign_flip() -> None:
    # Regression: with n = 3 the leave-one-out median of the two others is half the attacker,
    # which used to flag everyone (and the guard then flagged no one).
    rng = np.random.default_rng(7)
    base = rng.standard_normal(500)
    honest = [base + 0.5 * rng.standard_normal(500) for _ in range(2)]
    x = np.stack([*honest, -4.0 * honest[0]])
    mask = detect_outliers(x, OutlierRule(name="cosine_norm"))
    assert mask.tolist() == [False, False, True]
    noise = rng.standard_normal(500)
    noise *= np.linalg.norm(honest[0]) / np.linalg.norm(noise)
    mask = detect_outliers(np.stack([*honest, noise]), OutlierRule(name="cosine_norm"))
    assert mask.tolist() == [False, False, True]


def test_max_pair_cosines_separates_noise_from_correlated_updates() -> None:
    from aggregator.rules.consensus import max_pair_cosines

    rng = np.random.default_rng(3)
    base = rng.standard_normal(2000)
    honest = np.stack([base + rng.standard_normal(2000) for _ in range(6)])
    noise = rng.standard_normal((2, 2000))
    mc = max_pair_cosines(np.concatenate([honest, noise]))
    assert (mc[:6] > 0.3).all() and (mc[6:] < 0.15).all()
    mask = detect_outliers(np.concatenate([honest, noise]), OutlierRule(name="consensus"))
    assert mask.tolist() == [False] * 6 + [True] * 2


def test_distance_rules_need_four_updates() -> None:
    # Regression: with three honest updates, the farther one could exceed 3x the median
    # distance and be flagged (and slashed).
    x = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0]])
    for name in ("median", "trimmed_mean"):
        assert not detect_outliers(x, OutlierRule(name=name)).any()


# ----------------------------------------------------------------- evidence vs selection


def test_multi_krum_selects_without_flagging() -> None:
    # Multi-Krum always leaves n - to_keep updates out, even in an all-honest round: that is
    # selection, not evidence, so nothing is flagged (issue 11.9).
    rng = np.random.default_rng(12)
    x, _ = honest_round(rng, 5, 300)
    verdict = screen_updates(x.astype(np.float32), OutlierRule("multi_krum", num_malicious=1))
    assert not verdict.flagged.any()
    assert int(verdict.excluded.sum()) == 1
    assert np.array_equal(verdict.held_out, verdict.excluded)
    # an obvious attacker is still the one left out
    x[3] = -10.0 * x[3]
    verdict = screen_updates(x, OutlierRule("multi_krum", num_malicious=1))
    assert np.flatnonzero(verdict.excluded).tolist() == [3]
    assert not verdict.flagged.any()


@pytest.mark.parametrize(
    "name", ["median", "trimmed_mean", "norm_bound", "cosine", "cosine_norm", "consensus"]
)
def test_threshold_rules_flag_what_they_exclude(name: str) -> None:
    rng = np.random.default_rng(13)
    x, _ = honest_round(rng, 9, 400, noise=0.5)
    x[4] = -10.0 * x[4]  # far, large and pointing the other way
    x[7] = rng.standard_normal(400) * np.linalg.norm(x[0]) / 20.0  # noise-like
    rule = OutlierRule(name)  # type: ignore[arg-type]
    verdict = screen_updates(x, rule)
    assert np.array_equal(verdict.flagged, verdict.excluded)
    assert verdict.flagged[4] or verdict.flagged[7]
    assert not verdict.held_out.any()
    assert np.array_equal(verdict.excluded, detect_outliers(x, rule))


def test_norms64_equals_numpys_whole_matrix_norm_bit_for_bit() -> None:
    """The round function's norms are computed a block of rows at a time (no n x d float64
    copy); every value must be numpy's own, or recorded rounds would no longer verify."""
    rng = np.random.default_rng(3)
    for n, d in ((1, 7), (65, 1000), (300, 50_890)):
        x = rng.standard_normal((n, d)).astype(np.float32)
        assert np.array_equal(norms64(x), np.linalg.norm(x.astype(np.float64), axis=1))
