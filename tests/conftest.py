"""Shared fixtures: a fresh in-process chain with a deployed market (and its court), a local
store, and registered aggregators (a job can name only an aggregator whose free bond covers the
job's aggregator bond, by default its reward)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount

from backend.chain.base import Chain
from backend.chain.embedded import embedded_chain
from backend.chain.market import ROLE_AGGREGATOR, MarketClient
from backend.storage import LocalStore

ETHER = 10**18


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


@pytest.fixture
def new_aggregator(chain: Chain, market: MarketClient) -> Callable[..., LocalAccount]:
    """A factory: a fresh account registered as an aggregator with `bond` wei of bond."""

    def make(bond: int = 30 * ETHER) -> LocalAccount:
        account = chain.new_funded_account(bond + ETHER)
        market.register_role(account, ROLE_AGGREGATOR, bond)
        return account

    return make
