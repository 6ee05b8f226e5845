"""One demo market (with an attacker), indexed into SQLite, shared by every audit test."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from backend.audit.indexer import Indexer, IndexStats
from backend.simulation.demo import DemoConfig, DemoResult, run_demo

ROUNDS = 3
TRAINERS = 4


@dataclass
class Indexed:
    demo: DemoResult
    db_url: str
    stats: IndexStats
    indexer: Indexer


@pytest.fixture(scope="session")
def indexed(tmp_path_factory) -> Indexed:
    root = tmp_path_factory.mktemp("audit")
    demo = run_demo(
        DemoConfig(
            trainers=TRAINERS,
            attackers=1,
            rounds=ROUNDS,
            attack="sign_flip",
            store_dir=root / "store",
            audit=True,
        )
    )
    db_url = f"sqlite:///{root / 'index.db'}"
    indexer = Indexer(demo.chain.w3, demo.market.address, db_url, batch_size=10)
    stats = indexer.sync()
    return Indexed(demo, db_url, stats, indexer)


@pytest.fixture(scope="session")
def api_client(indexed: Indexed):
    from fastapi.testclient import TestClient

    from backend.audit.api import create_api

    app = create_api(indexed.db_url, store=indexed.demo.store)
    with TestClient(app) as client:
        yield client
