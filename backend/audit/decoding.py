"""Decoding FedMarket's and DisputeCourt's logs into plain event args, through web3's public
contract-event API.

Structs become dicts keyed by component name, addresses are checksummed, and `jsonable` turns
args into what the `events` table stores (bytes as 0x-hex, big integers as strings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_utils import event_abi_to_log_topic
from web3 import Web3
from web3.contract.contract import ContractEvent

from backend.chain.contracts import load_artifact

EventArgs = dict[str, Any]


@dataclass(frozen=True)
class DecodedEvent:
    """One log, decoded: the event's name and its args (plain Python values)."""

    name: str
    args: EventArgs


def hex_of(value: Any) -> str:
    """Bytes as 0x-prefixed hex."""
    return "0x" + bytes(value).hex()


def jsonable(value: Any) -> Any:
    """`value` as JSON can store it exactly (JavaScript loses integers from 2**53)."""
    if isinstance(value, bytes | bytearray):
        return hex_of(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: jsonable(x) for k, x in dict(value).items()}
    if isinstance(value, list | tuple):
        return [jsonable(x) for x in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return str(value)
    return value


class EventDecoder:
    """Decodes the logs of the named events of each (artifact, address) source — FedMarket and
    its DisputeCourt; other logs (another contract, another event) decode to None."""

    def __init__(self, w3: Web3, sources: Iterable[tuple[str, str]], names: Iterable[str]) -> None:
        wanted = set(names)
        self._by_topic: dict[tuple[str, bytes], tuple[dict[str, Any], ContractEvent]] = {}
        for artifact, address in sources:
            abi = load_artifact(artifact)["abi"]
            checksummed = Web3.to_checksum_address(address)
            contract = w3.eth.contract(address=checksummed, abi=abi)
            for item in abi:
                if item.get("type") == "event" and item["name"] in wanted:
                    key = (checksummed, event_abi_to_log_topic(item))
                    self._by_topic[key] = (item, contract.events[item["name"]]())

    def decode(self, log: Any) -> DecodedEvent | None:
        """The event in `log`, or None for a log without topics or of another event."""
        topics = log.get("topics") or []
        if not topics:
            return None
        key = (Web3.to_checksum_address(log["address"]), bytes(topics[0]))
        known = self._by_topic.get(key)
        if known is None:
            return None
        abi, event = known
        decoded = event.process_log(log)
        return DecodedEvent(abi["name"], _named_args(abi, decoded["args"]))


def _named_args(abi: dict[str, Any], args: Any) -> EventArgs:
    """Decoded event args as plain dicts (struct tuples named), addresses checksummed."""
    return {inp["name"]: _plain(inp, args[inp["name"]]) for inp in abi["inputs"]}


def _plain(inp: dict[str, Any], value: Any) -> Any:
    kind = inp["type"]
    if kind == "tuple":
        components = inp["components"]
        if hasattr(value, "items"):
            return {c["name"]: _plain(c, value[c["name"]]) for c in components}
        return {c["name"]: _plain(c, x) for c, x in zip(components, value, strict=True)}
    if kind == "address":
        return Web3.to_checksum_address(value)
    if kind.endswith("]"):  # dynamic or fixed-size arrays
        base = {**inp, "type": kind[: kind.rindex("[")]}
        return [_plain(base, x) for x in value]
    return value
