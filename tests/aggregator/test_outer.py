"""Tests for aggregator.rules.outer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aggregator.rules.outer import OuterOptimizer, outer_step, weighted_mean


def test_weighted_mean_basic() -> None:
    x = np.array([[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]])
    np.testing.assert_allclose(weighted_mean(x, np.array([1.0, 3.0, 0.0])), [2.5, 5.0])
    out = weighted_mean(x.astype(np.float32), np.array([1.0, 1.0, 1.0]))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, x.mean(axis=0))


def test_weighted_mean_zero_weights_and_ignored_rows() -> None:
    x = np.array([[1.0, 2.0], [np.nan, np.inf]])
    assert weighted_mean(x, np.zeros(2)).tolist() == [0.0, 0.0]
    # a zero-weight row is never read, even if it is garbage
    assert weighted_mean(x, np.array([2.0, 0.0])).tolist() == [1.0, 2.0]


def test_weighted_mean_rejects_bad_weights() -> None:
    x = np.ones((2, 3))
    for bad in ([1.0, -1.0], [1.0, np.nan], [1.0, np.inf], [1.0]):
        with pytest.raises(ValueError):
            weighted_mean(x, np.array(bad))


def test_weighted_mean_spans_several_blocks_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 150_001)).astype(np.float32)
    w = rng.uniform(0, 2, 5)
    a = weighted_mean(x, w)
    np.testing.assert_allclose(a, (w @ x.astype(np.float64)) / w.sum(), rtol=1e-12, atol=1e-12)
    assert np.array_equal(a, weighted_mean(x.copy(), w.copy()))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e6, 1e6)),
    st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=8),
)
def test_weighted_mean_of_identical_rows_is_the_row(row: np.ndarray, weights: list[float]) -> None:
    x = np.tile(row, (len(weights), 1))
    np.testing.assert_allclose(weighted_mean(x, np.array(weights)), row, rtol=1e-12, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, (4, 6), elements=st.floats(-1e3, 1e3)),
    hnp.arrays(np.float64, 4, elements=st.floats(0, 10)),
)
def test_weighted_mean_within_row_range(x: np.ndarray, w: np.ndarray) -> None:
    m = weighted_mean(x, w)
    if w.sum() == 0:
        assert np.all(m == 0)
    else:
        used = x[w > 0]
        assert np.all(m >= used.min(axis=0) - 1e-9)
        assert np.all(m <= used.max(axis=0) + 1e-9)


def test_sgd_step() -> None:
    w = np.array([1.0, 2.0, 3.0])
    delta = np.array([0.5, -1.0, 0.0])
    new, buf = outer_step(w, delta, OuterOptimizer("sgd", lr=0.7), None)
    np.testing.assert_allclose(new, w - 0.7 * delta)
    assert buf is None
    assert w.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(("lr", "mu"), [(0.7, 0.9), (1.0, 0.5), (0.1, 0.3)])
def test_nesterov_matches_torch_sgd(lr: float, mu: float) -> None:
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(3)]

    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    sgd = torch.optim.SGD([p], lr=lr, momentum=mu, nesterov=True)
    opt = OuterOptimizer("nesterov", lr=lr, momentum=mu)
    w, buf = w0.copy(), None
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        sgd.step()
        g_in = g.copy()
        buf_in = None if buf is None else buf.copy()
        w_new, buf_new = outer_step(w, g, opt, buf)
        # pure: inputs untouched
        assert np.array_equal(g, g_in)
        if buf is not None:
            assert np.array_equal(buf, buf_in)
        w, buf = w_new, buf_new
        np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-13, atol=1e-13)
        torch_buf = sgd.state[p]["momentum_buffer"].numpy()
        np.testing.assert_allclose(buf, torch_buf, rtol=1e-13, atol=1e-13)


def test_outer_step_validation_and_dict() -> None:
    with pytest.raises(ValueError):
        outer_step(np.zeros(3), np.zeros(2), OuterOptimizer(), None)
    with pytest.raises(ValueError):
        outer_step(np.zeros(3), np.zeros(3), OuterOptimizer("nesterov"), np.zeros(2))
    with pytest.raises(ValueError):
        OuterOptimizer("adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OuterOptimizer("nesterov", momentum=1.0)
    opt = OuterOptimizer("nesterov", lr=0.7, momentum=0.9)
    assert OuterOptimizer.from_dict(opt.to_dict()) == opt
    out, _ = outer_step(np.zeros(2, np.float32), np.ones(2, np.float32), opt, None)
    assert out.dtype == np.float64
