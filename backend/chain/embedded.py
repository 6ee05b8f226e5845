"""The in-process backend: a revm dev node (`revm_node`) with no servers, gone with the process."""

from __future__ import annotations

from typing import Any

from web3 import Web3
from web3.exceptions import ContractLogicError

from backend.chain.base import Chain
from backend.chain.revert import contract_revert
from backend.chain.revm_node import NodeError, RevmNode, RevmProvider


class EmbeddedChain(Chain):
    """A chain on an in-process `RevmNode`: its clock moves by time travel, and it answers log
    queries from the node's own index."""

    # Its clock moves only by time travel, and one process runs the roles in order (the demo
    # takes the snapshot between the commits and the reveals): no wait.
    reveal_grace_s = 0

    def __init__(self, w3: Web3, node: RevmNode) -> None:
        super().__init__(w3, kind="embedded", dev_keys=node.dev_keys)
        self._node = node

    @property
    def node(self) -> RevmNode:
        """The node, as of now (a shared journal first catches up: see `persistent`)."""
        return self._node

    def advance_time(self, seconds: int) -> int:
        """Move the chain's clock forward and mine a block."""
        self.node.mine_empty(self.now() + int(seconds))
        return self.now()

    def new_logs(self, address: str, from_block: int) -> tuple[int, list[dict[str, Any]]]:
        """From the node's index: the cost follows the answer, not the chain's history."""
        node = self.node
        return node.head.number, node.logs_of(address, None, from_block)

    # -- hot paths straight to the node (web3's request pipeline costs ~1 ms a call) ------
    def block_number(self) -> int:
        return self.node.head.number

    def now(self) -> int:
        return self.node.head.timestamp

    def balance(self, address: str) -> int:
        return self.node.balance(Web3.to_checksum_address(address))

    def _nonce(self, address: str) -> int:
        return self.node.nonce(address)

    def _prepare(self, tx: dict[str, Any], what: str) -> tuple[int, int | None, dict[str, int]]:
        """The estimate only: nonce and fees are read under the send lock (`persistent`)."""
        return self._estimate_tx(tx, what), None, {}

    def _fees(self) -> dict[str, int]:
        return self._fees_for(self.node.head.base_fee)

    def _eth_call(self, tx: dict[str, Any]) -> bytes:
        try:
            return self.node.call(tx, "latest")
        except NodeError as exc:
            raise _as_web3(exc) from None

    def _eth_estimate(self, tx: dict[str, Any]) -> int:
        try:
            return self.node.estimate_gas(tx, "pending")
        except NodeError as exc:
            raise _as_web3(exc) from None

    def _raise_failed(self, tx: dict[str, Any], receipt: Any, what: str, tx_hash: str) -> None:
        """The node kept the failed transaction's revert data: decode it."""
        mined = self.node.mined.get(bytes(receipt["transactionHash"]))
        name, args = self.errors.decode(mined.revert if mined is not None else b"")
        raise contract_revert(what, name, args if args else {"tx": tx_hash})


def _as_web3(exc: NodeError) -> Exception:
    """A node error as web3 raises it over JSON-RPC: reverts as ContractLogicError."""
    if exc.code == 3:
        return ContractLogicError("execution reverted", data=exc.data)
    return exc


def embedded_chain(genesis_timestamp: int | None = None) -> EmbeddedChain:
    """A fresh in-process EVM (revm): no servers, gone with the process."""
    node = RevmNode(genesis_timestamp)
    return EmbeddedChain(Web3(RevmProvider(node)), node)
