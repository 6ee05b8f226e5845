"""The chain adapter: one class over web3 for both the in-process EVM and a JSON-RPC node.

Transactions are always signed locally with the sender's key (the same path works against
eth-tester and a real node). A revert — raised in-process by eth-tester, or as a
ContractLogicError / failed receipt over RPC — always surfaces as one ContractRevert naming
the Solidity custom error and its arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception

from backend.chain.contracts import load_artifact
from backend.core.errors import (
    ChainUnavailable,
    ConfigError,
    ContractRevert,
    InsufficientFunds,
    eth_text,
)

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
_PANIC_SELECTOR = bytes.fromhex("4e487b71")
_ERROR_SELECTOR = bytes.fromhex("08c379a0")
_HEX_RE = re.compile(r"0x[0-9a-fA-F]{8,}")


@dataclass(frozen=True)
class TxResult:
    """What a mined transaction cost and emitted."""

    tx_hash: str
    gas_used: int
    block_number: int
    receipt: Any


class ErrorDecoder:
    """Maps 4-byte custom-error selectors from contract ABIs to names and argument names."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]] = ()) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            self.add(abi)

    def add(self, abi: list[dict[str, Any]]) -> None:
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [_abi_type(i) for i in item.get("inputs", [])]
            names = [i.get("name") or f"arg{n}" for n, i in enumerate(item.get("inputs", []))]
            sig = f"{item['name']}({','.join(types)})"
            self._errors[function_signature_to_4byte_selector(sig)] = (item["name"], types, names)

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        selector, body = data[:4], data[4:]
        if selector == _ERROR_SELECTOR:
            (msg,) = abi_decode(["string"], body)
            return "Error", {"message": msg}
        if selector == _PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], body)
            return "Panic", {"code": hex(code)}
        if selector in self._errors:
            name, types, names = self._errors[selector]
            try:
                values = abi_decode(types, body)
            except Exception:
                return name, {}
            return name, dict(zip(names, values, strict=True))
        if not data:
            return "Revert", {}
        return "UnknownError", {"data": "0x" + data.hex()}


def _abi_type(item: dict[str, Any]) -> str:
    t = item["type"]
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){t[5:]}"
    return t


def revert_data(exc: BaseException) -> bytes | None:
    """Dig the raw revert data out of whatever exception web3 / eth-tester raised."""
    candidates: list[Any] = [getattr(exc, "data", None), *getattr(exc, "args", ())]
    for cand in candidates:
        if isinstance(cand, bytes | bytearray):
            return bytes(cand)
        if isinstance(cand, str):
            m = _HEX_RE.search(cand)
            if m:
                return bytes.fromhex(m.group(0)[2:])
        if isinstance(cand, dict) and "data" in cand:
            inner = cand["data"]
            if isinstance(inner, str) and inner.startswith("0x"):
                return bytes.fromhex(inner[2:])
    if isinstance(exc, ContractLogicError | ContractCustomError):
        return b""
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        return revert_data(cause)
    return None


class Chain:
    """web3 plus local signing, dev-chain helpers and error mapping."""

    def __init__(
        self, w3: Web3, *, kind: str, dev_keys: list[str] | None = None, tx_timeout_s: float = 120.0
    ) -> None:
        self.w3 = w3
        self.kind = kind
        self.dev_keys = list(dev_keys or [])
        self.tx_timeout_s = tx_timeout_s
        self.errors = ErrorDecoder()
        self._chain_id: int | None = None
        # In-process only: eth-tester's get_logs re-decodes every block on every call (seconds
        # per query after a few hundred blocks), so the embedded chain keeps its own log index,
        # reading each block's receipts once.
        self._log_index: list[dict[str, Any]] = []
        self._indexed_to = -1

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def embedded(cls) -> Chain:
        """A fresh in-process EVM (eth-tester + py-evm): no servers, gone with the process."""
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider

        backend = PyEVMBackend()
        use_one_run_gas_estimates(backend)
        tester = EthereumTester(backend)
        w3 = Web3(EthereumTesterProvider(tester))
        keys = [k.to_hex() for k in backend.account_keys]
        return cls(w3, kind="embedded", dev_keys=keys)

    @classmethod
    def rpc(cls, url: str, *, tx_timeout_s: float = 120.0, dev_accounts: bool = False) -> Chain:
        """A JSON-RPC node over HTTP. `dev_accounts` exposes anvil's well-known keys."""
        # web3's validation middleware asks the node for eth_chainId on every call and
        # estimate (2-3 round trips per transaction); the chain id cannot change under us.
        w3 = Web3(
            Web3.HTTPProvider(url, request_kwargs={"timeout": 30}, cache_allowed_requests=True)
        )
        try:
            _ = w3.eth.chain_id  # a cheap call that proves the node answers
        except Exception as exc:
            raise ChainUnavailable(f"no JSON-RPC node answers at {url} ({exc})") from None
        keys: list[str] = []
        if dev_accounts:
            Account.enable_unaudited_hdwallet_features()
            keys = [
                Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex()
                for i in range(10)
            ]
        return cls(w3, kind="rpc", dev_keys=keys, tx_timeout_s=tx_timeout_s)

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

    def advance_time(self, seconds: int) -> int:
        """Move the chain's clock forward and mine a block (dev chains only)."""
        if self.kind == "embedded":
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            tester.time_travel(self.now() + int(seconds))
            tester.mine_blocks(1)  # time_travel leaves `latest` one second short of the target
        else:
            self.w3.provider.make_request("evm_increaseTime", [int(seconds)])  # type: ignore[arg-type]
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        return self.now()

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
        try:
            return fn.call()
        except (ContractLogicError, ContractCustomError) as exc:
            raise self._revert(fn.fn_name, exc) from None

    def transact(self, fn: ContractFunction, sender: LocalAccount, value: int = 0) -> TxResult:
        """Estimate, sign, send and wait; any revert becomes ContractRevert."""
        gas = self.estimate(fn, sender, value)
        try:
            # Everything filled in here, so build_transaction makes no RPC calls of its own.
            tx = fn.build_transaction(
                {
                    "from": sender.address,
                    "value": int(value),
                    "gas": gas + gas // 5 + 10_000,
                    "nonce": self._nonce(sender.address),
                    "chainId": self.chain_id,
                    **self._fees(),
                }
            )
        except Exception as exc:
            raise self._classify(exc, sender.address, int(value), fn.fn_name) from None
        return self._sign_and_send(tx, sender, fn.fn_name)

    def estimate(self, fn: ContractFunction, sender: LocalAccount, value: int = 0) -> int:
        """The gas `fn` would use; raises what sending it would (ContractRevert,
        InsufficientFunds) without sending anything."""
        try:
            return int(fn.estimate_gas({"from": sender.address, "value": int(value)}))
        except Exception as exc:
            raise self._classify(exc, sender.address, int(value), fn.fn_name) from None

    def preflight(self, fn: ContractFunction, sender: LocalAccount, value: int = 0) -> None:
        """Check that `fn` would succeed and that the sender can pay for it, before doing
        work that cannot be undone (uploads). Nothing is sent."""
        gas = self.estimate(fn, sender, value)
        cost = int(value) + (gas + gas // 5 + 10_000) * self._fees()["maxFeePerGas"]
        if self.balance(sender.address) < cost:
            raise self._short_of_funds(sender.address, int(value), fn.fn_name)

    def _classify(self, exc: Exception, sender: str, value: int, what: str) -> Exception:
        """A send's failure as the project's error; anything unexpected passes through."""
        if _is_insufficient_funds(exc):
            return self._short_of_funds(sender, value, what)
        if isinstance(exc, Web3Exception | ValueError) or _is_tester_failure(exc):
            return self._revert(what, exc)
        return exc

    # -- internals ------------------------------------------------------------------------
    def logs(self, address: str, from_block: int = 0) -> list[dict[str, Any]] | None:
        """Raw logs emitted by `address` since `from_block`, from the local index (embedded
        chains only; None elsewhere: a node answers eth_getLogs efficiently itself)."""
        if self.kind != "embedded":
            return None
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

    def _on_mined(self, raw_tx: bytes, receipt: Any) -> None:
        """Hook: a signed transaction was mined (backend.chain.persistent journals it)."""

    def _fees(self) -> dict[str, int]:
        """EIP-1559 fees: twice the latest base fee (room for rises) plus a tip on real nodes."""
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        tip = 10**9 if self.kind == "rpc" else 0
        return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip + 1}

    def _nonce(self, address: str) -> int:
        return int(self.w3.eth.get_transaction_count(address, "pending"))

    def _sign_and_send(self, tx: dict[str, Any], sender: LocalAccount, what: str) -> TxResult:
        tx = dict(tx)
        if "nonce" not in tx:  # not setdefault: that would ask the node even when it is set
            tx["nonce"] = self._nonce(sender.address)
        tx.setdefault("chainId", self.chain_id)
        if "maxFeePerGas" not in tx and "gasPrice" not in tx:
            tx.update(self._fees())
        signed = sender.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            raise self._classify(exc, sender.address, int(tx.get("value", 0)), what) from None
        # A dev node mines at once: poll fast rather than web3's default 0.1 s.
        receipt = self.w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=self.tx_timeout_s, poll_latency=0.01
        )
        self._on_mined(bytes(signed.raw_transaction), receipt)
        if receipt["status"] != 1:
            # Replay the call at the failing block to learn why (a node does not say in receipts).
            call = {k: tx[k] for k in ("from", "to", "value", "data") if k in tx}
            try:
                self.w3.eth.call(call, receipt["blockNumber"] - 1)  # type: ignore[arg-type]
            except Exception as exc:
                raise self._revert(what, exc) from None
            raise ContractRevert(what, "Revert", {"tx": tx_hash.hex()})
        return TxResult(
            tx_hash.hex(), int(receipt["gasUsed"]), int(receipt["blockNumber"]), receipt
        )

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

    def _revert(self, what: str, exc: BaseException) -> ContractRevert:
        data = revert_data(exc)
        if data is None:
            return ContractRevert(what, "Error", {"message": str(exc)})
        name, args = self.errors.decode(data)
        if name == "Revert" and str(exc):
            args = {"message": str(exc)}
        return ContractRevert(what, name, args)


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
