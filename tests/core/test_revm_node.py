"""The in-process revm node: exact gas (the same as py-evm, a reference EVM), real fee and
nonce accounting, failed transactions mined, and log queries that do not scan history."""

from __future__ import annotations

import time
from typing import Any

import pytest
from eth_account import Account
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3

from backend.chain.base import Chain, TxResult
from backend.chain.embedded import embedded_chain
from backend.chain.events import EventCache
from backend.chain.market import ROLE_AGGREGATOR, JobParams, MarketClient, commitment_hash
from backend.chain.revm_node import CHAIN_ID, NodeError, calldata_floor
from backend.core.errors import ContractRevert
from backend.core.valchunks import chunk_leaf

ETHER = 10**18


class PyEvmChain(Chain):
    """The same Chain over eth-tester + py-evm (Prague), the reference for gas."""

    def __init__(self, genesis_ts: int) -> None:
        from eth_tester import EthereumTester, PyEVMBackend

        params = PyEVMBackend.generate_genesis_params(overrides={"timestamp": genesis_ts})
        self.tester = EthereumTester(PyEVMBackend(genesis_parameters=params))
        keys = [k.to_hex() for k in self.tester.backend.account_keys]
        super().__init__(Web3(EthereumTesterProvider(self.tester)), kind="embedded", dev_keys=keys)

    def advance_time(self, seconds: int) -> int:
        self.tester.time_travel(self.now() + int(seconds))
        self.tester.mine_blocks(1)
        return self.now()

    # eth-tester's provider answers in Python types, not JSON-RPC hex: go through web3.
    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def _eth_call(self, tx: dict[str, Any]) -> bytes:
        return bytes(self.w3.eth.call(tx))  # type: ignore[arg-type]

    def _eth_estimate(self, tx: dict[str, Any]) -> int:
        return int(self.w3.eth.estimate_gas(tx))  # type: ignore[arg-type]

    def _nonce(self, address: str) -> int:
        return int(self.w3.eth.get_transaction_count(address, "pending"))  # type: ignore[arg-type]

    def _fees(self) -> dict[str, int]:
        base = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        return {"maxPriorityFeePerGas": 0, "maxFeePerGas": 2 * base + 1}

    def _prepare(self, tx: dict[str, Any], what: str) -> tuple[int, int | None, dict[str, int]]:
        return self._estimate_tx(tx, what), None, {}

    def _rpc(self, method: str, params: list[Any]) -> Any:
        if method == "eth_getTransactionReceipt":
            return None  # then `_wait_for_receipt`, through web3
        assert method == "eth_sendRawTransaction"
        return self.w3.eth.send_raw_transaction(params[0]).to_0x_hex()

    def _wait_for_receipt(self, tx_hash: Any, what: str) -> Any:
        return self.w3.eth.wait_for_transaction_receipt(tx_hash)


def _job_flow(chain: Chain) -> list[tuple[str, int]]:
    """A whole job with dev accounts only (the same calldata on every chain): the gas of
    each transaction."""
    deployer, agg, owner, t1, t2 = (chain.dev_account(i) for i in range(5))
    market, deployed = MarketClient.deploy(chain, deployer)
    gas: list[tuple[str, int]] = [("deploy", deployed.gas_used)]

    def note(name: str, result: TxResult) -> None:
        gas.append((name, result.gas_used))

    note("register_role", market.register_role(agg, ROLE_AGGREGATOR, 30 * ETHER))
    for t in (t1, t2):
        note("register", market.register(t, ETHER))
    params = JobParams(
        aggregator=agg.address,
        stake_required=10**17,
        rounds=1,
        min_trainers=2,
        max_trainers=2,
        spec_hash=b"\x01" * 32,
        spec_cid="spec",
        initial_model_hash=b"\x02" * 32,
        initial_model_cid="model",
        validation_root=chunk_leaf(1, b"\x03" * 32, "val", b"\x04" * 32),  # one round: root = leaf
        challenge_window=0,
    )
    job_id, created = market.create_job(owner, params, ETHER)
    note("create_job", created)
    for t in (t1, t2):
        note("join", market.join(t, job_id))
    salt = b"\x05" * 32
    for k, t in enumerate((t1, t2), start=1):
        digest = bytes([k]) * 32
        note(
            "commit",
            market.commit(t, job_id, commitment_hash(digest, "c", salt, t.address, job_id, 1)),
        )
    for k, t in enumerate((t1, t2), start=1):
        note("reveal", market.reveal(t, job_id, bytes([k]) * 32, "c", salt))
    note(
        "post_round",
        market.post_round(agg, job_id, 1, b"\x07" * 32, "m", [600_000, 400_000], [0, 0]),
    )
    note(
        "reveal_chunk",
        market.reveal_validation_chunk(owner, job_id, 1, b"\x03" * 32, "val", b"\x04" * 32, []),
    )
    chain.advance_time(3600)
    note("finalize", market.finalize(agg, job_id))
    for t in (t1, t2):
        note("claim", market.claim(t, job_id))
    note("withdraw", market.withdraw(t1, ETHER // 2))
    return gas


def test_every_transaction_of_a_job_costs_what_py_evm_says() -> None:
    """Gas is exact: the whole lifecycle on revm and on py-evm, transaction by transaction.
    (pyrevm keeps touched storage warm between transactions unless the node resets it, which
    made later transactions thousands of gas too cheap.)"""
    ts = int(time.time())
    assert _job_flow(embedded_chain(ts)) == _job_flow(PyEvmChain(ts))


def test_fees_and_nonces_are_charged_as_on_a_real_chain(chain: Chain, market: MarketClient) -> None:
    trainer = chain.new_funded_account(2 * ETHER)
    before = chain.balance(trainer.address)
    result = market.register(trainer, ETHER)
    receipt = result.receipt
    paid = ETHER + receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.balance(trainer.address) == before - paid
    assert chain.w3.eth.get_transaction_count(trainer.address) == 1
    assert (
        receipt["effectiveGasPrice"] == chain.w3.eth.get_block(result.block_number)["baseFeePerGas"]
    )


def test_a_failing_transaction_is_mined_charges_gas_and_uses_the_nonce(
    chain: Chain, market: MarketClient
) -> None:
    """A transaction sent without an estimate (as a raw signed one can be) that reverts."""
    trainer = chain.new_funded_account(2 * ETHER)
    node = chain.node  # type: ignore[attr-defined]
    data = market.contract.functions.withdraw(ETHER)._encode_transaction_data()  # no balance
    before = chain.balance(trainer.address)
    tx = {
        "to": market.address,
        "data": data,
        "value": 0,
        "gas": 200_000,
        "nonce": 0,
        "chainId": CHAIN_ID,
        "maxFeePerGas": 2 * node.head.base_fee + 1,
        "maxPriorityFeePerGas": 0,
    }
    tx_hash = node.send_raw_transaction(bytes(trainer.sign_transaction(tx).raw_transaction))
    mined = node.mined[tx_hash]
    assert mined.status == 0 and mined.revert[:4] != b""
    assert chain.balance(trainer.address) == before - mined.gas_used * mined.price
    assert node.nonce(trainer.address) == 1
    with pytest.raises(NodeError, match="nonce too low"):
        node.send_raw_transaction(bytes(trainer.sign_transaction(tx).raw_transaction))


def test_reverts_and_bad_transactions_are_clear(chain: Chain, market: MarketClient) -> None:
    poor = Account.create()
    with pytest.raises(ContractRevert) as info:
        market.finalize(chain.dev_account(0), 99)
    assert info.value.error in {"UnknownJob", "WrongStatus"}
    node = chain.node  # type: ignore[attr-defined]
    tx = {"to": market.address, "value": 0, "gas": 50_000, "nonce": 0, "chainId": CHAIN_ID}
    tx.update(maxFeePerGas=2 * node.head.base_fee, maxPriorityFeePerGas=0)
    with pytest.raises(NodeError, match="insufficient funds"):
        node.send_raw_transaction(bytes(poor.sign_transaction(tx).raw_transaction))
    with pytest.raises(NodeError, match="invalid chain id"):
        signed = poor.sign_transaction({**tx, "chainId": 1})
        node.send_raw_transaction(bytes(signed.raw_transaction))
    with pytest.raises(NodeError, match="invalid raw transaction"):
        node.send_raw_transaction(b"\x02\x01garbage")


def test_the_calldata_floor_of_prague() -> None:
    assert calldata_floor(b"") == 21_000
    assert calldata_floor(b"\x00\x01") == 21_000 + 10 * (1 + 4)


def test_log_queries_follow_the_answer_not_the_history(
    chain: Chain, market: MarketClient, new_aggregator: Any
) -> None:
    """The node's index answers by (address, topic) and block range exactly as eth_getLogs
    filters, and the event cache reads each new log once."""
    for _ in range(3):
        market.register(chain.new_funded_account(2 * ETHER), ETHER)
    node = chain.node  # type: ignore[attr-defined]
    registered = market.contract.events.TrainerRegistered()
    topic = bytes(HexBytes(registered.topic))
    every = node.logs_of(market.address, topic)
    assert len(every) == 3
    later = node.logs_of(market.address, topic, from_block=every[1]["blockNumber"])
    assert later == every[1:]
    via_rpc = registered.get_logs(from_block=every[1]["blockNumber"])
    assert [log["transactionHash"] for log in via_rpc] == [g["transactionHash"] for g in later]

    cache = EventCache(chain)
    assert len(cache.query(market.contract, "TrainerRegistered", 0, {})) == 3
    market.register(chain.new_funded_account(2 * ETHER), ETHER)
    assert len(cache.query(market.contract, "TrainerRegistered", 0, {})) == 4
    stream = cache._contracts[market.address].streams["TrainerRegistered"]
    assert len(stream.entries) == 4  # caught up with the new block only, nothing read twice
