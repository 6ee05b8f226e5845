"""An in-process Ethereum dev node over revm (pyrevm): the embedded default's EVM.

eth-tester + py-evm cost ~20 ms of Python per transaction and ran each one twice (estimate,
then mine). revm is a Rust EVM: a FedMarket commit executes in ~0.1 ms. This module adds what
revm leaves out and a dev node has: blocks (one per transaction, automined, one second apart
unless time travels), EIP-1559 base fees, nonces, signature checks, receipts and a log index
that answers by address and topic without re-reading blocks.

`RevmProvider` speaks the JSON-RPC subset web3 uses, so everything above `Chain` is unchanged
and the same code runs against anvil. Differences from a full node, by design: no historical
state (calls and estimates run on the latest or pending block), no mempool, and block hashes
are digests of (parent, number, timestamp, transactions) rather than of an RLP header.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rlp
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_keys import KeyAPI
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from pyrevm import EVM, AccountInfo, BlockEnv, CfgEnv, Env
from web3.providers.base import BaseProvider

CHAIN_ID = 131277322940537  # eth-tester's, so journals and tools see the same dev chain id
GENESIS_BASE_FEE = 10**9
BLOCK_GAS_LIMIT = 30_000_000
DEV_KEYS = [f"0x{i:064x}" for i in range(1, 11)]  # eth-tester's ten funded dev keys
DEV_BALANCE = 10**24  # 1,000,000 ETH each
# revm 8 (pyrevm 0.3.7) implements forks up to Cancun, the contracts' EVM target. Prague adds
# one rule that can change a FedMarket transaction's gas, EIP-7623's calldata floor, applied
# here (`calldata_floor`); its other changes (BLS precompiles, set-code transactions) are unused.
SPEC = "CANCUN"
# revm credits the block's beneficiary with the whole fee (it sees a zero base fee); a real
# chain burns the base fee, so the beneficiary is a sink whose balance is never written back.
FEE_SINK = "0x000000000000000000000000000000000000FEE5"
EMPTY_CODE_HASH = keccak(b"")
_WRITTEN_SLOT_RE = re.compile(
    r"StorageChange \{ address: (0x[0-9a-fA-F]{40}), key: (\d+), had_value: Some"
)

_FAILURE_RE = re.compile(r"gas_used: (\d+)(?:, output: 0x([0-9a-fA-F]*))?")
_HALT_RE = re.compile(r"Halt \{ reason: (\w+)")


class NodeError(ValueError):
    """A JSON-RPC error as a node would return it."""

    def __init__(self, message: str, code: int = -32000, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data

    def as_rpc(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass
class Block:
    number: int
    timestamp: int
    base_fee: int
    parent_hash: bytes
    tx_hashes: list[bytes] = field(default_factory=list)
    gas_used: int = 0
    hash: bytes = b""

    def seal(self) -> None:
        self.hash = keccak(
            self.parent_hash
            + self.number.to_bytes(8, "big")
            + self.timestamp.to_bytes(8, "big")
            + b"".join(self.tx_hashes)
        )


@dataclass
class Tx:
    """A decoded signed transaction."""

    hash: bytes
    sender: str
    nonce: int
    to: str | None
    value: int
    data: bytes
    gas: int
    max_fee: int
    max_priority_fee: int
    type: int
    chain_id: int | None


@dataclass
class Mined:
    tx: Tx
    block: int
    status: int
    gas_used: int
    price: int
    contract_address: str | None
    logs: list[dict[str, Any]]
    revert: bytes = b""


@dataclass
class Outcome:
    ok: bool
    gas_used: int
    gas_refunded: int
    output: bytes
    logs: list[Any]
    created: str | None = None
    halt: str = ""  # why revm halted (OutOfGas, ...), when it did


def decode_raw(raw: bytes) -> Tx:
    """A signed transaction's fields and sender; NodeError if it is malformed."""
    try:
        if raw[0] >= 0xC0:  # legacy
            sender = to_checksum_address(Account.recover_transaction(HexBytes(raw)))
            nonce, price, gas, to, value, data, v, _r, _s = rlp.decode(raw)
            chain_id = (
                (int.from_bytes(v, "big") - 35) // 2 if int.from_bytes(v, "big") > 28 else None
            )
            fields = {
                "nonce": nonce,
                "gas": gas,
                "to": to,
                "value": value,
                "data": data,
                "max_fee": price,
                "tip": price,
            }
            kind = 0
        else:
            typed = TypedTransaction.from_bytes(HexBytes(raw))
            v, r, s = typed.vrs()
            signature = KeyAPI.Signature(vrs=(v, r, s))
            sender = signature.recover_public_key_from_msg_hash(typed.hash()).to_checksum_address()
            d = typed.as_dict()
            kind = int(d["type"])
            chain_id = int(d["chainId"])
            price = d.get("gasPrice")
            fields = {
                "nonce": d["nonce"],
                "gas": d["gas"],
                "to": d.get("to") or b"",
                "value": d["value"],
                "data": bytes(d.get("data") or b""),
                "max_fee": d.get("maxFeePerGas", price),
                "tip": d.get("maxPriorityFeePerGas", price),
            }
    except Exception as exc:
        raise NodeError(f"invalid raw transaction: {exc}") from None
    return Tx(
        hash=keccak(raw),
        sender=sender,
        nonce=_int(fields["nonce"]),
        to=to_checksum_address(fields["to"]) if fields["to"] else None,
        value=_int(fields["value"]),
        data=bytes(fields["data"]),
        gas=_int(fields["gas"]),
        max_fee=_int(fields["max_fee"]),
        max_priority_fee=_int(fields["tip"]),
        type=kind,
        chain_id=chain_id,
    )


def _int(value: Any) -> int:
    return int.from_bytes(value, "big") if isinstance(value, bytes) else int(value)


def next_base_fee(parent: Block) -> int:
    """EIP-1559: the base fee moves by up to 1/8 towards the gas target (half the limit)."""
    target = BLOCK_GAS_LIMIT // 2
    base = parent.base_fee
    if parent.gas_used == target:
        return base
    if parent.gas_used > target:
        return base + max(1, base * (parent.gas_used - target) // target // 8)
    return max(0, base - base * (target - parent.gas_used) // target // 8)


class RevmNode:
    """An automining dev chain: one block per transaction, state in revm."""

    def __init__(self, genesis_timestamp: int | None = None, dev_keys: list[str] = DEV_KEYS):
        ts = int(time.time()) if genesis_timestamp is None else int(genesis_timestamp)
        self.dev_keys = list(dev_keys)
        self.dev_accounts = {
            to_checksum_address(Account.from_key(k).address): k for k in self.dev_keys
        }
        self.evm = EVM(
            env=Env(cfg=CfgEnv(chain_id=CHAIN_ID)), gas_limit=BLOCK_GAS_LIMIT, spec_id=SPEC
        )
        for address in self.dev_accounts:
            self.evm.insert_account_info(address, AccountInfo(balance=DEV_BALANCE))
        genesis = Block(0, ts, GENESIS_BASE_FEE, b"\x00" * 32)
        genesis.seal()
        self.blocks: list[Block] = [genesis]
        self.by_hash: dict[bytes, int] = {genesis.hash: 0}
        self.mined: dict[bytes, Mined] = {}
        self.logs: list[dict[str, Any]] = []
        # (address, topic0) -> positions in self.logs, in chain order
        self._log_keys: dict[tuple[str, bytes], list[int]] = {}
        self._by_address: dict[str, list[int]] = {}  # address -> positions in self.logs
        self.next_timestamp: int | None = None

    # -- blocks ---------------------------------------------------------------------------
    @property
    def head(self) -> Block:
        return self.blocks[-1]

    def _pending(self) -> Block:
        parent = self.head
        ts = self.next_timestamp if self.next_timestamp is not None else parent.timestamp + 1
        return Block(
            parent.number + 1, max(ts, parent.timestamp), next_base_fee(parent), parent.hash
        )

    def _enter(self, block: Block) -> None:
        self.evm.set_block_env(
            BlockEnv(
                number=block.number,
                timestamp=block.timestamp,
                basefee=block.base_fee,
                gas_limit=BLOCK_GAS_LIMIT,
                prevrandao=keccak(b"prevrandao" + block.parent_hash),
                coinbase=FEE_SINK,
            )
        )

    def _append(self, block: Block) -> None:
        block.seal()
        self.blocks.append(block)
        self.by_hash[block.hash] = block.number
        self.next_timestamp = None

    def mine_empty(self, timestamp: int | None = None) -> Block:
        """Mine a block with no transactions (at `timestamp` when given)."""
        if timestamp is not None:
            self.next_timestamp = int(timestamp)
        block = self._pending()
        self._append(block)
        return block

    def block(self, tag: Any) -> Block | None:
        if tag in (None, "latest", "safe", "finalized"):
            return self.head
        if tag == "pending":
            return self._pending()
        if tag == "earliest":
            return self.blocks[0]
        number = int(tag, 16) if isinstance(tag, str) else int(tag)
        return self.blocks[number] if 0 <= number < len(self.blocks) else None

    # -- accounts -------------------------------------------------------------------------
    # pyrevm never ends a transaction: whatever its journal has loaded stays warm (EIP-2929)
    # for every later one, and gas would come out too low. So the journal is kept empty
    # between transactions: every read and every execution runs inside a checkpoint that is
    # reverted, and a mined transaction's effects are written to the database underneath
    # (see `_mine`), where the next transaction finds them cold, as on a real chain.
    def _peek(self, read: Callable[[], Any]) -> Any:
        checkpoint = self.evm.snapshot()
        try:
            return read()
        finally:
            self.evm.revert(checkpoint)

    def nonce(self, address: str) -> int:
        return int(self._peek(lambda: self.evm.basic(address).nonce))

    def balance(self, address: str) -> int:
        return int(self._peek(lambda: self.evm.get_balance(address)))

    def code(self, address: str) -> bytes:
        return bytes(self._peek(lambda: self.evm.get_code(address)) or b"")

    # -- execution ------------------------------------------------------------------------
    def _execute(
        self, sender: str, to: str | None, data: bytes, value: int, gas: int, price: int
    ) -> Outcome:
        try:
            if to is None:
                created = self.evm.deploy(sender, data, value=value, gas=gas, gas_price=price)
                result = self.evm.result
                return Outcome(
                    True, result.gas_used, result.gas_refunded, b"", result.logs, created
                )
            output = self.evm.message_call(sender, to, data, value=value, gas=gas, gas_price=price)
            result = self.evm.result
            return Outcome(True, result.gas_used, result.gas_refunded, bytes(output), result.logs)
        except RuntimeError as exc:
            return _failed(str(exc))

    def _dry_run(self, call: dict[str, Any], tag: Any) -> Outcome:
        """Run a call or estimate on a throwaway copy of the state."""
        block = self._pending() if tag in ("pending", None) else self.block(tag)
        if block is None or block.number < self.head.number:
            raise NodeError("this in-process node keeps no historical state; call on latest")
        self._enter(block)
        sender = to_checksum_address(call.get("from") or "0x" + "00" * 20)
        to = call.get("to")
        args = (
            sender,
            to_checksum_address(to) if to else None,
            _bytes_hex(call.get("data") or call.get("input")),
            _int_hex(call.get("value")),
            _int_hex(call.get("gas")) or BLOCK_GAS_LIMIT,
            0,
        )
        return self._peek(lambda: self._execute(*args))

    def call(self, call: dict[str, Any], tag: Any = "latest") -> bytes:
        outcome = self._dry_run(call, tag)
        if not outcome.ok:
            raise _reverted(outcome)
        return outcome.output

    def estimate_gas(self, call: dict[str, Any], tag: Any = "pending") -> int:
        """Gas before refunds, from one run at the block limit (what the limit must cover)."""
        if tag == "latest":
            tag = "pending"  # the transaction is mined in the next block, as eth-tester does
        call = dict(call)
        call.pop("gas", None)
        value = _int_hex(call.get("value"))
        sender = to_checksum_address(call.get("from") or "0x" + "00" * 20)
        if value > self.balance(sender):
            raise NodeError("insufficient funds for gas * price + value")
        outcome = self._dry_run(call, tag)
        if not outcome.ok:
            raise _reverted(outcome)
        floor = calldata_floor(_bytes_hex(call.get("data") or call.get("input")))
        return max(outcome.gas_used + outcome.gas_refunded, floor)

    def send_raw_transaction(self, raw: bytes, timestamp: int | None = None) -> bytes:
        """Validate, execute and mine `raw` in a block of its own; its hash."""
        tx = decode_raw(raw)
        if timestamp is not None:
            self.next_timestamp = int(timestamp)
        block = self._pending()
        self._validate(tx, block)
        price = min(tx.max_fee, block.base_fee + tx.max_priority_fee)
        self._enter(block)
        outcome = self._mine(tx, price)
        self._record(tx, block, outcome, price)
        return tx.hash

    def _mine(self, tx: Tx, price: int) -> Outcome:
        """Execute `tx` in a checkpoint, note what it changed, revert, and write the changes
        to the database (plus the sender's fee and nonce, which revm's message calls skip)."""
        checkpoint = self.evm.snapshot()
        try:
            outcome = self._execute(tx.sender, tx.to, tx.data, tx.value, tx.gas, price)
            floor = calldata_floor(tx.data)
            extra_fee = max(floor - outcome.gas_used, 0) * price
            outcome.gas_used = max(outcome.gas_used, floor)
            accounts = dict(self.evm.journal_state) if outcome.ok else {}
            slots = self._written_slots() if outcome.ok else {}
        finally:
            self.evm.revert(checkpoint)
            self.evm.reset_transient_storage()
        sender = accounts.get(tx.sender) or self._peek(lambda: self.evm.basic(tx.sender))
        if tx.to is None and outcome.ok:  # revm's deploy charged the fee and used the nonce
            balance, nonce = sender.balance - extra_fee, sender.nonce
        else:
            balance, nonce = sender.balance - outcome.gas_used * price, sender.nonce + 1
        accounts[tx.sender] = AccountInfo(balance=balance, nonce=nonce)  # an EOA (EIP-3607)
        self._write(accounts, slots)
        return outcome

    def _written_slots(self) -> dict[tuple[str, int], int]:
        """(address, slot) -> value of every storage slot the open checkpoint wrote."""
        keys = {(a, int(k)) for a, k in _WRITTEN_SLOT_RE.findall(self.evm.journal_str)}
        return {(a, k): int(self.evm.storage(a, k)) for a, k in keys}

    def _write(self, accounts: dict[str, Any], slots: dict[tuple[str, int], int]) -> None:
        for address, info in accounts.items():
            if address.lower() == FEE_SINK.lower() or _empty(info):
                continue  # the fee sink; an empty account a real chain would delete
            self.evm.insert_account_info(address, info)
        for (address, key), value in slots.items():
            # Into the database; the account load pyrevm adds is undone by the revert.
            self._peek(lambda a=address, k=key, v=value: self.evm.insert_account_storage(a, k, v))

    def _validate(self, tx: Tx, block: Block) -> None:
        if tx.chain_id is not None and tx.chain_id != CHAIN_ID:
            raise NodeError(f"invalid chain id {tx.chain_id} (this chain is {CHAIN_ID})")
        expected = self.nonce(tx.sender)
        if tx.nonce != expected:
            word = "low" if tx.nonce < expected else "high"
            raise NodeError(f"nonce too {word}: transaction has {tx.nonce}, account has {expected}")
        if tx.gas < calldata_floor(tx.data):
            raise NodeError(f"gas limit {tx.gas} is below the calldata floor (EIP-7623)")
        if tx.gas > BLOCK_GAS_LIMIT:
            raise NodeError(f"gas limit {tx.gas} exceeds the block gas limit {BLOCK_GAS_LIMIT}")
        if tx.max_fee < block.base_fee:
            raise NodeError(f"max fee per gas {tx.max_fee} is below the base fee {block.base_fee}")
        if self.balance(tx.sender) < tx.gas * tx.max_fee + tx.value:
            raise NodeError("insufficient funds for gas * price + value")

    def _record(self, tx: Tx, block: Block, outcome: Outcome, price: int) -> None:
        index = len(block.tx_hashes)
        block.tx_hashes.append(tx.hash)
        block.gas_used += outcome.gas_used
        self._append(block)
        logs = [self._index_log(raw, tx, block, index, n) for n, raw in enumerate(outcome.logs)]
        created = to_checksum_address(outcome.created) if outcome.created else None
        self.mined[tx.hash] = Mined(
            tx,
            block.number,
            int(outcome.ok),
            outcome.gas_used,
            price,
            created,
            logs,
            b"" if outcome.ok else outcome.output,
        )

    def _index_log(self, raw: Any, tx: Tx, block: Block, tx_index: int, n: int) -> dict[str, Any]:
        topics = [bytes.fromhex(t[2:]) if isinstance(t, str) else bytes(t) for t in raw.topics]
        log = {
            "address": to_checksum_address(raw.address),
            "topics": topics,
            "data": bytes(raw.data[1]),
            "blockNumber": block.number,
            "blockHash": block.hash,
            "transactionHash": tx.hash,
            "transactionIndex": tx_index,
            "logIndex": n,
            "removed": False,
        }
        position = len(self.logs)
        self._log_keys.setdefault((log["address"], topics[0] if topics else b""), []).append(
            position
        )
        self._by_address.setdefault(log["address"], []).append(position)
        self.logs.append(log)
        return log

    # -- logs -----------------------------------------------------------------------------
    def logs_of(
        self,
        address: str,
        topic0: bytes | None = None,
        from_block: int = 0,
        to_block: int | None = None,
    ) -> list[dict[str, Any]]:
        """Logs of `address` (with first topic `topic0` when given) in a block range, in chain
        order; found through the index, so the cost follows the answer, not the history."""
        address = to_checksum_address(address)
        if topic0 is not None:
            positions = self._log_keys.get((address, bytes(topic0)), [])
        else:
            positions = self._by_address.get(address, [])

        def block_of(position: int) -> int:
            return int(self.logs[position]["blockNumber"])

        lo = bisect.bisect_left(positions, from_block, key=block_of)
        hi = len(positions)
        if to_block is not None:
            hi = bisect.bisect_right(positions, to_block, key=block_of)
        return [self.logs[p] for p in positions[lo:hi]]


def calldata_floor(data: bytes) -> int:
    """EIP-7623 (Prague): a transaction uses at least 21,000 + 10 gas per calldata token (a
    zero byte is one token, any other byte four)."""
    zeros = data.count(0)
    return 21_000 + 10 * (zeros + 4 * (len(data) - zeros))


def _empty(info: Any) -> bool:
    code_hash = bytes(info.code_hash or EMPTY_CODE_HASH)
    return info.balance == 0 and info.nonce == 0 and code_hash == EMPTY_CODE_HASH


def _failed(message: str) -> Outcome:
    """revm's failure text (`Revert { gas_used: N, output: 0x.. }`, `Halt { reason, gas_used }`)
    or a transaction it refused before running."""
    match = _FAILURE_RE.search(message)
    if match is None:
        raise NodeError(_refusal_text(message))
    output = bytes.fromhex(match.group(2)) if match.group(2) else b""
    halt = _HALT_RE.search(message)
    return Outcome(False, int(match.group(1)), 0, output, [], halt=halt.group(1) if halt else "")


def _refusal_text(message: str) -> str:
    if "LackOfFund" in message:
        return "insufficient funds for gas * price + value"
    return f"transaction refused by the EVM: {message}"


def _reverted(outcome: Outcome) -> NodeError:
    starved = not outcome.output and outcome.gas_used >= BLOCK_GAS_LIMIT * 63 // 64
    if outcome.halt == "OutOfGas" or starved:  # starved: an inner call ran out (63/64 rule)
        return NodeError(
            f"out of gas: the call needs more than the block gas limit ({BLOCK_GAS_LIMIT:,} gas)"
        )
    if outcome.halt:
        return NodeError(f"execution halted: {outcome.halt}")
    return NodeError("execution reverted", code=3, data="0x" + outcome.output.hex())


def _int_hex(value: Any) -> int:
    if value is None:
        return 0
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes_hex(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    return bytes(value)


class RevmProvider(BaseProvider):
    """web3's view of a `RevmNode`: the JSON-RPC methods web3 and this project use."""

    def __init__(self, node: RevmNode) -> None:
        super().__init__()
        self.node = node

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True

    def make_request(self, method: Any, params: Any) -> Any:
        handler = getattr(self, "_" + str(method), None)
        if handler is None:
            error = {"code": -32601, "message": f"method {method} is not supported in-process"}
            return {"jsonrpc": "2.0", "id": 0, "error": error}
        try:
            return {"jsonrpc": "2.0", "id": 0, "result": handler(*(params or ()))}
        except NodeError as exc:
            return {"jsonrpc": "2.0", "id": 0, "error": exc.as_rpc()}

    # -- chain and accounts -----------------------------------------------------------------
    def _eth_chainId(self) -> str:
        return hex(CHAIN_ID)

    def _net_version(self) -> str:
        return str(CHAIN_ID)

    def _web3_clientVersion(self) -> str:
        return "fedmarket-revm/1"

    def _eth_accounts(self) -> list[str]:
        return list(self.node.dev_accounts)

    def _eth_blockNumber(self) -> str:
        return hex(self.node.head.number)

    def _eth_getBalance(self, address: str, tag: Any = "latest") -> str:
        return hex(self.node.balance(address))

    def _eth_getTransactionCount(self, address: str, tag: Any = "latest") -> str:
        return hex(self.node.nonce(address))

    def _eth_getCode(self, address: str, tag: Any = "latest") -> str:
        return "0x" + self.node.code(address).hex()

    def _eth_gasPrice(self) -> str:
        return hex(self.node._pending().base_fee)

    def _eth_maxPriorityFeePerGas(self) -> str:
        return "0x0"

    # -- blocks -----------------------------------------------------------------------------
    def _eth_getBlockByNumber(self, tag: Any, full: bool = False) -> dict[str, Any] | None:
        block = self.node.block(tag)
        return None if block is None else self._block(block, full)

    def _eth_getBlockByHash(self, block_hash: str, full: bool = False) -> dict[str, Any] | None:
        number = self.node.by_hash.get(_bytes_hex(block_hash))
        return None if number is None else self._block(self.node.blocks[number], full)

    def _block(self, block: Block, full: bool) -> dict[str, Any]:
        txs: list[Any] = ["0x" + h.hex() for h in block.tx_hashes]
        if full:
            txs = [self._tx(self.node.mined[h]) for h in block.tx_hashes]
        zero = "0x" + "00" * 32
        return {
            "number": hex(block.number),
            "hash": "0x" + block.hash.hex(),
            "parentHash": "0x" + block.parent_hash.hex(),
            "timestamp": hex(block.timestamp),
            "baseFeePerGas": hex(block.base_fee),
            "gasLimit": hex(BLOCK_GAS_LIMIT),
            "gasUsed": hex(block.gas_used),
            "miner": "0x" + "00" * 20,
            "difficulty": "0x0",
            "totalDifficulty": "0x0",
            "extraData": "0x",
            "nonce": "0x0000000000000000",
            "mixHash": "0x" + keccak(b"prevrandao" + block.parent_hash).hex(),
            "sha3Uncles": zero,
            "logsBloom": "0x" + "00" * 256,
            "stateRoot": zero,
            "transactionsRoot": zero,
            "receiptsRoot": zero,
            "size": "0x0",
            "uncles": [],
            "transactions": txs,
        }

    # -- transactions -------------------------------------------------------------------------
    def _eth_call(self, call: dict[str, Any], tag: Any = "latest", *_: Any) -> str:
        return "0x" + self.node.call(call, tag).hex()

    def _eth_estimateGas(self, call: dict[str, Any], tag: Any = "latest", *_: Any) -> str:
        return hex(self.node.estimate_gas(call, tag))

    def _eth_sendRawTransaction(self, raw: str) -> str:
        return "0x" + self.node.send_raw_transaction(_bytes_hex(raw)).hex()

    def _eth_sendTransaction(self, tx: dict[str, Any]) -> str:
        """A transaction from a dev account, signed here (eth-tester's unlocked accounts)."""
        sender = to_checksum_address(tx["from"])
        key = self.node.dev_accounts.get(sender)
        if key is None:
            raise NodeError(f"{sender} is not an unlocked dev account; sign the transaction")
        pending = self.node._pending()
        fields: dict[str, Any] = {
            "chainId": CHAIN_ID,
            "nonce": _int_hex(tx.get("nonce")) if "nonce" in tx else self.node.nonce(sender),
            "value": _int_hex(tx.get("value")),
            "data": _bytes_hex(tx.get("data") or tx.get("input")),
            "maxPriorityFeePerGas": _int_hex(tx.get("maxPriorityFeePerGas")),
            "maxFeePerGas": _int_hex(tx.get("maxFeePerGas")) or 2 * pending.base_fee + 1,
        }
        if tx.get("to"):
            fields["to"] = to_checksum_address(tx["to"])
        fields["gas"] = _int_hex(tx.get("gas")) or self.node.estimate_gas(tx) * 6 // 5 + 10_000
        raw = Account.sign_transaction(fields, key).raw_transaction
        return self._eth_sendRawTransaction("0x" + bytes(raw).hex())

    def _eth_getTransactionByHash(self, tx_hash: str) -> dict[str, Any] | None:
        mined = self.node.mined.get(_bytes_hex(tx_hash))
        return None if mined is None else self._tx(mined)

    def _tx(self, mined: Mined) -> dict[str, Any]:
        tx = mined.tx
        block = self.node.blocks[mined.block]
        return {
            "hash": "0x" + tx.hash.hex(),
            "from": tx.sender,
            "to": tx.to,
            "nonce": hex(tx.nonce),
            "value": hex(tx.value),
            "input": "0x" + tx.data.hex(),
            "gas": hex(tx.gas),
            "gasPrice": hex(mined.price),
            "maxFeePerGas": hex(tx.max_fee),
            "maxPriorityFeePerGas": hex(tx.max_priority_fee),
            "type": hex(tx.type),
            "chainId": hex(tx.chain_id or CHAIN_ID),
            "blockNumber": hex(block.number),
            "blockHash": "0x" + block.hash.hex(),
            "transactionIndex": hex(block.tx_hashes.index(tx.hash)),
            "v": "0x0",
            "r": "0x0",
            "s": "0x0",
        }

    def _eth_getTransactionReceipt(self, tx_hash: str) -> dict[str, Any] | None:
        mined = self.node.mined.get(_bytes_hex(tx_hash))
        if mined is None:
            return None
        block = self.node.blocks[mined.block]
        index = block.tx_hashes.index(mined.tx.hash)
        return {
            "transactionHash": "0x" + mined.tx.hash.hex(),
            "transactionIndex": hex(index),
            "blockHash": "0x" + block.hash.hex(),
            "blockNumber": hex(block.number),
            "from": mined.tx.sender,
            "to": mined.tx.to,
            "cumulativeGasUsed": hex(block.gas_used),
            "gasUsed": hex(mined.gas_used),
            "effectiveGasPrice": hex(mined.price),
            "contractAddress": mined.contract_address,
            "logs": [_rpc_log(log) for log in mined.logs],
            "logsBloom": "0x" + "00" * 256,
            "status": hex(mined.status),
            "type": hex(mined.tx.type),
        }

    def _eth_getLogs(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        addresses = flt.get("address")
        if isinstance(addresses, str):
            addresses = [addresses]
        topics = flt.get("topics") or []
        first = topics[0] if topics and isinstance(topics[0], str) else None
        lo = self._block_number(flt.get("fromBlock"), 0)
        hi = self._block_number(flt.get("toBlock"), self.node.head.number)
        if addresses is None:
            found = [g for g in self.node.logs if lo <= g["blockNumber"] <= hi]
        else:
            topic0 = _bytes_hex(first) if first else None
            found = [g for a in addresses for g in self.node.logs_of(a, topic0, lo, hi)]
            found.sort(key=lambda g: (g["blockNumber"], g["transactionIndex"], g["logIndex"]))
        return [_rpc_log(g) for g in found if _topics_match(g["topics"], topics)]

    def _block_number(self, tag: Any, default: int) -> int:
        if tag is None:
            return default
        block = self.node.block(tag)
        return self.node.head.number if block is None else min(block.number, self.node.head.number)


def _topics_match(have: list[bytes], want: list[Any]) -> bool:
    for position, wanted in enumerate(want):
        if wanted is None:
            continue
        options = [wanted] if isinstance(wanted, str) else list(wanted)
        if position >= len(have) or not any(_bytes_hex(o) == have[position] for o in options):
            return False
    return True


def _rpc_log(log: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": log["address"],
        "topics": ["0x" + t.hex() for t in log["topics"]],
        "data": "0x" + log["data"].hex(),
        "blockNumber": hex(log["blockNumber"]),
        "blockHash": "0x" + log["blockHash"].hex(),
        "transactionHash": "0x" + log["transactionHash"].hex(),
        "transactionIndex": hex(log["transactionIndex"]),
        "logIndex": hex(log["logIndex"]),
        "removed": False,
    }
