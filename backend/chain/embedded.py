"""The in-process backend: an eth-tester + py-evm chain with no servers, gone with the process.

Also the one-run gas estimator both in-process backends install (py-evm's default runs each
transaction about 13 times to estimate it).
"""

from __future__ import annotations

from typing import Any

from web3 import Web3

from backend.chain.base import Chain


class EmbeddedChain(Chain):
    """A chain on an in-process EthereumTester: its clock moves by time travel, and it keeps
    its own log index (see `logs`)."""

    # Its clock moves only by time travel, and one process runs the roles in order (the demo
    # takes the snapshot between the commits and the reveals): no wait.
    reveal_grace_s = 0

    def __init__(self, w3: Web3, tester: Any, dev_keys: list[str]) -> None:
        super().__init__(w3, kind="embedded", dev_keys=dev_keys)
        self.tester = tester
        # eth-tester's get_logs re-decodes every block on every call (seconds per query after
        # a few hundred blocks), so this chain keeps its own log index, reading each block's
        # receipts once.
        self._log_index: list[dict[str, Any]] = []
        self._indexed_to = -1

    def advance_time(self, seconds: int) -> int:
        """Move the chain's clock forward and mine a block."""
        self.tester.time_travel(self.now() + int(seconds))
        self.tester.mine_blocks(1)  # time_travel leaves `latest` one second short of the target
        return self.now()

    def logs(self, address: str, from_block: int = 0) -> list[dict[str, Any]] | None:
        """Raw logs emitted by `address` since `from_block`, from the local index."""
        latest = int(self.w3.eth.block_number)
        for number in range(self._indexed_to + 1, latest + 1):
            block = self.w3.eth.get_block(number)
            for tx_hash in block["transactions"]:
                receipt = self.w3.eth.get_transaction_receipt(tx_hash)
                self._log_index.extend(dict(log) for log in receipt["logs"])
            self._indexed_to = number
        address = Web3.to_checksum_address(address)
        return [
            log
            for log in self._log_index
            if log["address"] == address and int(log["blockNumber"]) >= from_block
        ]


def new_tester(genesis_timestamp: int | None = None) -> Any:
    """An EthereumTester on a fresh py-evm backend using the one-run gas estimator."""
    from eth_tester import EthereumTester, PyEVMBackend

    if genesis_timestamp is None:
        backend = PyEVMBackend()
    else:
        overrides = {"timestamp": int(genesis_timestamp)}
        params = PyEVMBackend.generate_genesis_params(overrides=overrides)
        backend = PyEVMBackend(genesis_parameters=params)
    use_one_run_gas_estimates(backend)
    return EthereumTester(backend)


def tester_dev_keys(tester: Any) -> list[str]:
    """The hex private keys of a tester's funded genesis accounts."""
    return [k.to_hex() for k in tester.backend.account_keys]


def embedded_chain() -> EmbeddedChain:
    """A fresh in-process EVM (eth-tester + py-evm): no servers, gone with the process."""
    from web3 import EthereumTesterProvider

    tester = new_tester()
    return EmbeddedChain(Web3(EthereumTesterProvider(tester)), tester, tester_dev_keys(tester))


def one_run_gas_estimate(state: Any, transaction: Any) -> int:
    """py-evm gas estimator: one execution at the block gas limit, returning the gas it
    consumed before refunds (what the limit must cover).

    py-evm's default binary search runs the transaction about 13 times; this runs it once.
    `Chain.transact` adds a margin (20% + 10,000) for the 63/64 rule on calls, so a limit
    from here never runs out where the search's would not. A failing transaction raises
    its VMError, exactly as the search does.
    """
    from eth.vm.spoof import SpoofTransaction

    limit = _affordable_gas(state, transaction)
    at_limit = SpoofTransaction(transaction, gas=limit, gas_price=0)
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(at_limit)
        if computation.is_error:
            raise computation.error
        return int(limit - computation.get_gas_remaining())
    finally:
        state.revert(snapshot)


def _affordable_gas(state: Any, transaction: Any) -> int:
    """The block gas limit, capped by what the sender can pay for after the value (as geth
    does): otherwise an account holding its stake plus real gas cost could not even be
    estimated, since 30M gas at the fee cap costs far more than the transaction will."""
    fee = int(getattr(transaction, "max_fee_per_gas", 0) or 0)
    spare = state.get_balance(transaction.sender) - int(transaction.value)
    if fee <= 0 or spare < 0:
        return int(state.gas_limit)  # nothing to cap by; an unaffordable value fails as it is
    return int(min(state.gas_limit, spare // fee))


def use_one_run_gas_estimates(backend: Any) -> None:
    """Give an eth-tester PyEVMBackend's chain the one-run estimator: the instance (py-evm
    copies the default onto it at construction) and its class, which is made per backend and
    outlives eth-tester's snapshot reverts (they rebuild the chain from the class)."""
    type(backend.chain).gas_estimator = staticmethod(one_run_gas_estimate)
    backend.chain.gas_estimator = one_run_gas_estimate
