"""Fixtures for the FedMarket contract tests; the harness lives in contract_harness.py."""

from __future__ import annotations

import pytest
from contract_harness import SEEN_ERRORS, Chain


@pytest.fixture
def chain() -> Chain:
    return Chain()


@pytest.fixture
def seen_errors() -> set[str]:
    return SEEN_ERRORS
