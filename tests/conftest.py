"""Shared fixtures: a fresh in-process chain with a deployed market, and a local store."""

from __future__ import annotations

import pytest

from backend.chain.base import Chain
from backend.chain.embedded import embedded_chain
from backend.chain.market import MarketClient
from backend.storage import LocalStore


@pytest.fixture
def chain() -> Chain:
    return embedded_chain()


@pytest.fixture
def market(chain: Chain) -> MarketClient:
    client, _ = MarketClient.deploy(chain, chain.dev_account(0))
    return client


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")
