"""Fixtures for the aggregator service tests."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from backend.chain.base import Chain
from backend.core.datasets import load_digits_dataset, split_train_validation_test

ETHER = 10**18


@pytest.fixture(scope="session")
def digits():
    train, val, _ = split_train_validation_test(load_digits_dataset(), seed=0)
    return train, val


@pytest.fixture
def aggregator(chain: Chain) -> LocalAccount:
    return chain.new_funded_account(10 * ETHER)
