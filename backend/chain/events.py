"""Decoded contract events, read incrementally: each log is fetched and decoded once.

Clients ask for a job's events again and again (each trainer, each round). Re-reading and
re-decoding the whole history every time made the market's cost per update grow with the
number of rounds. `EventCache` keeps each contract's decoded events up to the last block it
has read, indexed by event, job and (job, round), so a query costs what it returns plus the
logs emitted since the last one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_utils import event_abi_to_log_topic
from web3.contract import Contract

from backend.chain.base import Chain


def same_value(value: Any, wanted: Any) -> bool:
    """An event argument equals a filter value (addresses compared case-insensitively)."""
    if isinstance(value, str) and isinstance(wanted, str):
        return value.lower() == wanted.lower()
    return bool(value == wanted)


@dataclass
class _Stream:
    """One event's decoded logs, indexed by job and by (job, round)."""

    entries: list[Any] = field(default_factory=list)
    by_job: dict[Any, list[Any]] = field(default_factory=dict)
    by_job_round: dict[tuple[Any, Any], list[Any]] = field(default_factory=dict)

    def add(self, entry: Any) -> None:
        self.entries.append(entry)
        args = entry["args"]
        if "jobId" in args:
            self.by_job.setdefault(args["jobId"], []).append(entry)
            if "round" in args:
                key = (args["jobId"], args["round"])
                self.by_job_round.setdefault(key, []).append(entry)

    def candidates(self, filters: Mapping[str, Any]) -> list[Any]:
        if "jobId" in filters and "round" in filters:
            return self.by_job_round.get((filters["jobId"], filters["round"]), [])
        if "jobId" in filters:
            return self.by_job.get(filters["jobId"], [])
        return self.entries


@dataclass
class _ContractLogs:
    """One contract's decoded events from block `start` to block `read_to`."""

    start: int
    read_to: int = -1
    streams: dict[str, _Stream] = field(default_factory=dict)


class EventCache:
    """Decoded events of a chain's contracts, caught up on each query: one log read per
    contract for all its events, of the blocks mined since the last."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._contracts: dict[str, _ContractLogs] = {}
        self._names: dict[str, dict[bytes, str]] = {}  # address -> topic0 -> event name
        self._lock = threading.Lock()

    def query(
        self, contract: Contract, event: str, from_block: int, filters: Mapping[str, Any]
    ) -> list[Any]:
        """`event` logs of `contract` from `from_block` whose arguments match `filters`, in
        chain order."""
        address = str(contract.address)
        with self._lock:
            logs = self._contracts.get(address)
            if logs is None or logs.start > from_block:
                logs = self._contracts[address] = _ContractLogs(start=from_block)
            self._catch_up(contract, logs)
            stream = logs.streams.get(event)
            found = stream.candidates(filters) if stream is not None else []
        return [
            entry
            for entry in found
            if entry["blockNumber"] >= from_block
            and all(same_value(entry["args"].get(k), v) for k, v in filters.items())
        ]

    def _catch_up(self, contract: Contract, logs: _ContractLogs) -> None:
        first = max(logs.start, logs.read_to + 1)
        latest, raw = self.chain.new_logs(str(contract.address), first)
        names = self._names.get(str(contract.address))
        if names is None:
            names = self._names[str(contract.address)] = _event_names(contract)
        for log in raw:
            name = names.get(bytes(log["topics"][0])) if log["topics"] else None
            entry = _decoded(getattr(contract.events, name)(), log) if name else None
            if entry is not None:
                logs.streams.setdefault(name, _Stream()).add(entry)  # type: ignore[arg-type]
        logs.read_to = max(logs.read_to, latest)


def _event_names(contract: Contract) -> dict[bytes, str]:
    """topic0 -> event name, for the events of `contract`'s ABI."""
    return {
        event_abi_to_log_topic(item): item["name"]  # type: ignore[arg-type]
        for item in contract.abi
        if item.get("type") == "event" and not item.get("anonymous")
    }


def _decoded(ev: Any, log: Any) -> Any:
    try:
        return ev.process_log(log)
    except Exception:  # a log that does not decode as its topic's event: not one of ours
        return None
