"""The same code against a real JSON-RPC node: anvil from npm, started on a free loopback port."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from backend.chain.market import MarketClient
from backend.chain.rpc import rpc_chain
from backend.cli.main import app
from backend.core.errors import ContractRevert
from backend.devtools.devnode import AnvilNode, find_anvil

pytestmark = pytest.mark.skipif(find_anvil() is None, reason="anvil not installed (npm)")


@pytest.fixture(scope="module")
def anvil():
    with AnvilNode() as node:
        yield node


def test_reverts_over_rpc_name_the_custom_error(anvil: AnvilNode) -> None:
    chain = rpc_chain(anvil.url, dev_accounts=True)
    market, _ = MarketClient.deploy(chain, chain.dev_account(0))
    trainer = chain.new_funded_account(10**19)
    market.register(trainer, 10**18)
    with pytest.raises(ContractRevert) as info:
        market.register(trainer, 10**18)
    assert info.value.error == "AlreadyRegistered"
    with pytest.raises(ContractRevert) as info:
        market.withdraw(trainer, 5 * 10**18)
    assert info.value.error == "InsufficientFreeStake"
    t0 = chain.now()
    assert chain.advance_time(600) >= t0 + 600


def test_demo_on_anvil_matches_embedded_claims(anvil: AnvilNode, tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--trainers",
            "3",
            "--attackers",
            "1",
            "--rounds",
            "2",
            "--rpc-url",
            anvil.url,
            "--store",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout.strip().splitlines()[-1])
    assert s["accuracy"][1] > s["accuracy"][0]
    bad = next(t for t in s["trainers"] if t["attack"])
    assert bad["reward_wei"] == 0 and bad["slashed_wei"] > 0
    assert (
        sum(t["reward_wei"] for t in s["trainers"]) + s["refund_wei"]
        == s["escrow_wei"] + s["slashed_to_pool_wei"]
    )
