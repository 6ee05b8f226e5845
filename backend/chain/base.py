"""The chain interface: one class over web3, whatever runs the EVM.

`Chain` holds what every backend shares: local signing (the same path works against eth-tester
and a real node), fees, nonces, deploys, calls and the mapping of failures to the project's
errors. A revert — raised in-process by eth-tester, or as a ContractLogicError / failed receipt
over RPC — always surfaces as one ContractRevert naming the Solidity custom error and its
arguments. The backends live in their own modules: `embedded` (in-process EVM), `persistent`
(the in-process EVM saved as a journal) and `rpc` (a JSON-RPC node).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception

from backend.chain.abi import decode_output, encode_call, log_from_rpc, receipt_from_rpc
from backend.chain.contracts import load_artifact
from backend.chain.revert import ErrorDecoder, contract_revert
from backend.core.errors import ChainUnavailable, ConfigError, InsufficientFunds
from backend.core.units import eth_text


@dataclass(frozen=True)
class TxResult:
    """What a mined transaction cost and emitted."""

    tx_hash: str
    gas_used: int
    block_number: int
    receipt: Any


#: Most calls sent in one JSON-RPC batch: nodes cap batches (geth at 1,000 by default), and a
#: job may have 1,024 trainers.
MAX_BATCH = 256


class Chain(ABC):
    """web3 plus local signing, dev-chain helpers and error mapping."""

    # Tip on top of twice the base fee; a real node's miners want one, py-evm does not.
    priority_fee_wei: int = 0

    # The block a gas estimate runs against (None: the backend's default). A node estimates on
    # `latest`, whose timestamp may still be before a deadline the transaction itself, mined in
    # the next block, will be past (e.g. a round becoming final); `pending` is that next block.
    estimate_block: str | None = None

    # How long after the commit phase closes the trainer runner waits before revealing (at most
    # a tenth of the job's reveal window): the aggregator's snapshot of the sealed updates
    # (`aggregator.round.gather.SealedSnapshot`) comes before any reveal.
    reveal_grace_s: int = 60

    def __init__(
        self, w3: Web3, *, kind: str, dev_keys: list[str] | None = None, tx_timeout_s: float = 120.0
    ) -> None:
        self.w3 = w3
        self.kind = kind
        self.dev_keys = list(dev_keys or [])
        self.tx_timeout_s = tx_timeout_s
        self.errors = ErrorDecoder()
        self._chain_id: int | None = None

    # -- accounts -------------------------------------------------------------------------
    def dev_account(self, index: int = 0) -> LocalAccount:
        if not self.dev_keys:
            raise ConfigError(
                "this chain exposes no dev accounts; use a keystore account "
                "(`fedmarket account new`) or pass --dev-accounts on a dev chain"
            )
        return Account.from_key(self.dev_keys[index])

    def new_funded_account(self, wei: int) -> LocalAccount:
        """A fresh key funded from dev account 0 (dev chains only)."""
        acct = Account.create()
        self.send_value(self.dev_account(0), acct.address, wei)
        return acct

    def send_value(self, sender: LocalAccount, to: str, wei: int) -> TxResult:
        tx = {"from": sender.address, "to": to, "value": wei, "gas": 21_000}
        return self._sign_and_send(tx, sender, "transfer")

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # -- time -----------------------------------------------------------------------------
    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def next_block_time(self) -> int:
        """A lower bound of the next block's timestamp: the time a transaction sent now is
        judged at. The in-process chain stamps each block one second after its parent (time
        travel aside); a node stamps it with the wall clock, never before its parent (anvil
        may repeat a second)."""
        latest = self.now()
        if self.kind == "embedded":
            return latest + 1
        return max(latest, int(time.time()))

    @abstractmethod
    def advance_time(self, seconds: int) -> int:
        """Move the chain's clock forward and mine a block (dev chains only); the new time."""

    # -- backend hooks --------------------------------------------------------------------
    def new_logs(self, address: str, from_block: int) -> tuple[int, list[dict[str, Any]]]:
        """(latest block, raw logs `address` emitted in blocks `from_block`..latest), in one
        round trip (a JSON-RPC batch; logs of blocks mined in between are left for next time).
        Logs are in the types web3's `process_log` reads."""
        # From the block before: a block already read exists, where `from_block` may not yet
        # (a node refuses a range that starts past its head).
        query = {"address": address, "fromBlock": hex(max(from_block - 1, 0)), "toBlock": "latest"}
        number, raw = self._batch([("eth_blockNumber", []), ("eth_getLogs", [query])])
        latest = int(number, 16)
        logs = [log_from_rpc(log) for log in raw]
        return latest, [g for g in logs if from_block <= g["blockNumber"] <= latest]

    def _batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """The results of several JSON-RPC calls, in one round trip per `MAX_BATCH` of them
        (one by one when the node does not take batches); an error raises as `_rpc` raises
        it."""
        results: list[Any] = []
        for start in range(0, len(calls), MAX_BATCH):
            results += self._one_batch(calls[start : start + MAX_BATCH])
        return results

    def _one_batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """At most `MAX_BATCH` calls in one round trip (see `_batch`)."""
        try:
            responses = self.w3.provider.make_batch_request(calls)  # type: ignore[arg-type]
        except (NotImplementedError, AttributeError):
            responses = None
        if not isinstance(responses, list) or len(responses) != len(calls):
            return [self._rpc(method, params) for method, params in calls]
        for response in responses:
            if "error" in response:
                raise _rpc_error(response["error"])
        return [response["result"] for response in responses]

    def sending(self) -> AbstractContextManager[None]:
        """Held around each signed send, from nonce to receipt (a backend may lock here)."""
        return nullcontext()

    def block_number(self) -> int:
        return int(self._rpc("eth_blockNumber", []), 16)

    def _rpc(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call straight to the provider: web3's per-method formatting costs
        ~5 ms a call, the node ~0.2 ms. An error answer raises as web3 raises it (a revert as
        ContractLogicError carrying its data)."""
        response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise _rpc_error(response["error"])
        return response["result"]

    def _eth_call(self, tx: dict[str, Any]) -> bytes:
        """eth_call on the latest block (reverts raise web3's ContractLogicError)."""
        return HexBytes(self._rpc("eth_call", [_rpc_tx(tx), "latest"]))

    def _eth_estimate(self, tx: dict[str, Any]) -> int:
        return int(self._rpc(*self._estimate_call(tx)), 16)

    def _estimate_call(self, tx: dict[str, Any]) -> tuple[str, list[Any]]:
        return "eth_estimateGas", [_rpc_tx(tx), self.estimate_block or "latest"]

    def on_mined(self, raw_tx: bytes, receipt: Any) -> None:
        """Called with each signed transaction once mined (a backend may record it)."""
        return None  # nothing to record by default

    # -- contracts ------------------------------------------------------------------------
    def contract(self, name: str, address: str) -> Contract:
        artifact = load_artifact(name)
        self.errors.add(artifact["abi"])
        address = Web3.to_checksum_address(address)
        if not self.w3.eth.get_code(address):
            raise ConfigError(
                f"no contract code at {address} on this chain; deploy first "
                "(`fedmarket deploy`) or fix FEDMARKET_MARKET_ADDRESS"
            )
        return self.w3.eth.contract(address=address, abi=artifact["abi"])

    def deploy(self, name: str, sender: LocalAccount, *args: Any) -> tuple[Contract, TxResult]:
        artifact = load_artifact(name)
        self.errors.add(artifact["abi"])
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        tx = factory.constructor(*args).build_transaction(
            {"from": sender.address, "nonce": self._nonce(sender.address)}
        )
        result = self._sign_and_send(tx, sender, f"deploy {name}")
        address = result.receipt["contractAddress"]
        return self.w3.eth.contract(address=address, abi=artifact["abi"]), result

    def call(self, fn: ContractFunction) -> Any:
        """A view's decoded result, as `fn.call()` returns it (the ABI is encoded and decoded
        here once, without web3's per-call contract machinery)."""
        try:
            raw = self._eth_call({"to": fn.address, "data": encode_call(fn)})
        except (ContractLogicError, ContractCustomError) as exc:
            raise self.errors.to_revert(fn.fn_name, exc) from None
        return decode_output(self.w3, fn.abi, raw)

    def transact(
        self, fn: ContractFunction, sender: LocalAccount, value: int = 0, suffix: bytes = b""
    ) -> TxResult:
        """Estimate, sign, send and wait; any revert becomes ContractRevert.

        `suffix`: bytes appended to the calldata after the ABI arguments. The contract ignores
        them (Solidity decodes only its arguments, as ERC-2771 relies on); off-chain readers
        find them in the transaction (`call_suffixes`). The estimate includes them.
        """
        tx = self._call_tx(fn, sender, value, suffix)
        gas, nonce, fees = self._prepare(tx, fn.fn_name)
        tx.update(gas=gas + gas // 5 + 10_000, chainId=self.chain_id)
        if nonce is not None:
            tx.update(nonce=nonce, **fees)
        return self._sign_and_send(tx, sender, fn.fn_name)

    def _prepare(self, tx: dict[str, Any], what: str) -> tuple[int, int | None, dict[str, int]]:
        """The gas estimate, with the sender's nonce and the fees from the same round trip
        (a JSON-RPC batch). A backend that must read those under its send lock returns no
        nonce, and `_sign_and_send` fills them in."""
        calls = [self._estimate_call(tx)]
        calls.append(("eth_getTransactionCount", [tx["from"], "pending"]))
        calls.append(("eth_getBlockByNumber", ["latest", False]))
        try:
            estimate, count, latest = self._batch(calls)
        except Exception as exc:
            raise self._classify(exc, tx["from"], int(tx["value"]), what) from None
        return int(estimate, 16), int(count, 16), self._fees_for(_base_fee(latest))

    def call_suffixes(self, tx_hashes: Sequence[bytes], args_bytes: int) -> list[bytes]:
        """What each transaction's calldata carries after its selector and `args_bytes` of
        static ABI arguments (see `transact`'s `suffix`), batched (`_batch`); b"" for a
        transaction the node does not know."""
        txs = self._batch(
            [("eth_getTransactionByHash", [HexBytes(h).to_0x_hex()]) for h in tx_hashes]
        )
        return [bytes(HexBytes(tx["input"]))[4 + args_bytes :] if tx else b"" for tx in txs]

    def estimate(self, fn: ContractFunction, sender: LocalAccount, value: int = 0) -> int:
        """The gas `fn` would use; raises what sending it would (ContractRevert,
        InsufficientFunds) without sending anything."""
        return self._estimate_tx(self._call_tx(fn, sender, value), fn.fn_name)

    def _call_tx(
        self, fn: ContractFunction, sender: LocalAccount, value: int = 0, suffix: bytes = b""
    ) -> dict[str, Any]:
        """The transaction fields of calling `fn`, its calldata encoded once."""
        data = encode_call(fn) + suffix
        return {"from": sender.address, "to": fn.address, "value": int(value), "data": data}

    def _estimate_tx(self, tx: dict[str, Any], what: str) -> int:
        try:
            return self._eth_estimate(tx)
        except Exception as exc:
            raise self._classify(exc, tx["from"], int(tx["value"]), what) from None

    def preflight(self, fn: ContractFunction, sender: LocalAccount, value: int = 0) -> None:
        """Check that `fn` would succeed and that the sender can pay for it, before doing
        work that cannot be undone (uploads). Nothing is sent."""
        gas = self.estimate(fn, sender, value)
        cost = int(value) + (gas + gas // 5 + 10_000) * self._fees()["maxFeePerGas"]
        if self.balance(sender.address) < cost:
            raise self._short_of_funds(sender.address, int(value), fn.fn_name)

    # -- internals ------------------------------------------------------------------------
    def _classify(self, exc: Exception, sender: str, value: int, what: str) -> Exception:
        """A send's failure as the project's error; anything unexpected passes through."""
        if _is_insufficient_funds(exc):
            return self._short_of_funds(sender, value, what)
        if isinstance(exc, Web3Exception | ValueError) or _is_tester_failure(exc):
            return self.errors.to_revert(what, exc)
        return exc

    def _fees(self) -> dict[str, int]:
        """EIP-1559 fees: twice the latest base fee (room for rises) plus the backend's tip."""
        return self._fees_for(_base_fee(self._rpc("eth_getBlockByNumber", ["latest", False])))

    def _fees_for(self, base: int) -> dict[str, int]:
        """The fees over base fee `base`: twice it (room for rises) plus the tip."""
        tip = self.priority_fee_wei
        return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip + 1}

    def _nonce(self, address: str) -> int:
        return int(self._rpc("eth_getTransactionCount", [address, "pending"]), 16)

    def _sign_and_send(self, tx: dict[str, Any], sender: LocalAccount, what: str) -> TxResult:
        with self.sending():
            tx = dict(tx)
            if "nonce" not in tx:  # not setdefault: that would ask the node even when it is set
                tx["nonce"] = self._nonce(sender.address)
            if "maxFeePerGas" not in tx and "gasPrice" not in tx:
                tx.update(self._fees())
            tx.setdefault("chainId", self.chain_id)
            signed = sender.sign_transaction(tx)
            raw = HexBytes(signed.raw_transaction)
            tx_hash = HexBytes(keccak(raw))
            calls = [("eth_sendRawTransaction", [raw.to_0x_hex()])]
            # A dev node mines at once: its receipt comes back in the same round trip.
            calls.append(("eth_getTransactionReceipt", [tx_hash.to_0x_hex()]))
            try:
                _, mined = self._batch(calls)
            except Exception as exc:
                raise self._classify(exc, sender.address, int(tx.get("value", 0)), what) from None
            if mined is not None:
                receipt = receipt_from_rpc(mined)
            else:
                receipt = self._wait_for_receipt(tx_hash, what)
            self.on_mined(bytes(signed.raw_transaction), receipt)
            if receipt["status"] != 1:
                self._raise_failed(tx, receipt, what, tx_hash.hex())
        return TxResult(
            tx_hash.hex(), int(receipt["gasUsed"]), int(receipt["blockNumber"]), receipt
        )

    def _wait_for_receipt(self, tx_hash: HexBytes, what: str) -> Any:
        """The mined receipt, polled from 0.5 ms doubling to 50 ms: a dev node mines within a
        millisecond, so a fixed 10 ms poll cost up to 10 ms a transaction; a real chain's
        block time makes the cap irrelevant."""
        deadline = time.monotonic() + self.tx_timeout_s
        delay = 0.0005
        while True:
            raw = self._rpc("eth_getTransactionReceipt", [tx_hash.to_0x_hex()])
            if raw is not None:  # formatted as web3's get_transaction_receipt formats it
                return receipt_from_rpc(raw)
            if time.monotonic() > deadline:
                raise ChainUnavailable(
                    f"{what} ({tx_hash.to_0x_hex()}) was not mined within {self.tx_timeout_s:.0f}"
                    " s; it may still be pending: check the transaction on the node"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _raise_failed(self, tx: dict[str, Any], receipt: Any, what: str, tx_hash: str) -> None:
        """Replay a failed transaction at its block to learn why (a node's receipt does not
        say) and raise that as ContractRevert."""
        call = {k: tx[k] for k in ("from", "to", "value", "data") if k in tx}
        try:
            self.w3.eth.call(call, receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except Exception as exc:
            raise self.errors.to_revert(what, exc) from None
        raise contract_revert(what, "Revert", {"tx": tx_hash})

    def _short_of_funds(self, address: str, value: int, what: str) -> InsufficientFunds:
        how = (
            "on a dev chain: `fedmarket account fund NAME --eth N`"
            if self.dev_keys
            else "a transfer from a funded account"
        )
        return InsufficientFunds(
            f"{address} cannot pay for {what}: it holds {eth_text(self.balance(address))} ETH and "
            f"{what} needs {eth_text(value)} ETH plus gas; send it ETH first ({how})"
        )


def _rpc_tx(tx: dict[str, Any]) -> dict[str, str]:
    """A call's fields as JSON-RPC wants them."""
    out = {"data": HexBytes(tx.get("data", b"")).to_0x_hex()}
    if tx.get("from"):
        out["from"] = str(tx["from"])
    if tx.get("to"):
        out["to"] = str(tx["to"])
    if tx.get("value"):
        out["value"] = hex(int(tx["value"]))
    return out


def _base_fee(block: dict[str, Any]) -> int:
    """A JSON-RPC block's base fee (0 before London)."""
    return int(block.get("baseFeePerGas") or "0x0", 16)


def _rpc_error(error: Any) -> Exception:
    """A JSON-RPC error object as web3 would raise it."""
    if not isinstance(error, dict):
        return ValueError(str(error))
    message = str(error.get("message", ""))
    data = error.get("data")
    if error.get("code") == 3 or "revert" in message.lower():
        return ContractLogicError(message, data=data if isinstance(data, str) else None)
    return ValueError(error)


_NO_FUNDS = (
    "cannot afford txn",
    "does not have enough balance",
    "insufficient funds",
    "sender doesn't have enough funds",
)


def _is_insufficient_funds(exc: BaseException) -> bool:
    """py-evm ("cannot afford txn gas ...") and nodes ("insufficient funds for gas * price +
    value") both say it only in words."""
    text = str(exc).lower()
    return any(marker in text for marker in _NO_FUNDS)


def _is_tester_failure(exc: BaseException) -> bool:
    try:
        from eth_tester.exceptions import TransactionFailed
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, TransactionFailed)
