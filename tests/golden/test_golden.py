"""Behaviour pinned across refactors: every rule × scoring method (and the compressed codecs)
gives the same scores, reasons and model hash, round by round, and the demo the same summary."""

from __future__ import annotations

import json

import pytest

from tests.golden import cases, demo_cases

ROUND_GOLDEN = cases.recorded().get(cases.cpu_kind(), {})
DEMO_GOLDEN = json.loads(demo_cases.GOLDEN.read_text())


@pytest.mark.skipif(
    not ROUND_GOLDEN,
    reason=f"no round golden recorded on this kind of CPU ({cases.cpu_kind()}): "
    "run `python -m tests.golden.cases` on main to record one",
)
@pytest.mark.parametrize("key", sorted(ROUND_GOLDEN) or ["none"])
def test_round_results_unchanged(key: str) -> None:
    rule, scoring, *codec = key.split("/")
    spec = cases.spec_for(rule, scoring, *codec)
    assert cases.run_case(spec) == ROUND_GOLDEN[key]


@pytest.mark.parametrize("key", sorted(DEMO_GOLDEN))
def test_demo_summary_unchanged(key: str) -> None:
    assert demo_cases.demo_summary(demo_cases.DEMOS[key]) == DEMO_GOLDEN[key]
