"""Fixtures for the aggregator service tests."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from backend.core.datasets import load_digits_dataset, split_train_validation_test

ETHER = 10**18


@pytest.fixture(scope="session")
def digits():
    train, val, _ = split_train_validation_test(load_digits_dataset(), seed=0)
    return train, val


@pytest.fixture
def aggregator(new_aggregator) -> LocalAccount:
    """A registered aggregator whose bond covers three jobs' (10 ETH each, the reward)."""
    return new_aggregator(30 * ETHER)
