"""Finding the jobs an aggregator serves: those created with its address as aggregator."""

from __future__ import annotations

from collections.abc import Callable

from backend.chain.market import MarketClient


class JobDiscovery:
    """Scans JobCreated events for one aggregator, each block once."""

    def __init__(self, market: MarketClient, aggregator: str, from_block: int = 0) -> None:
        self.market = market
        self.aggregator = aggregator
        self.scan_from = from_block  # the first block not scanned yet

    def scan(self, record: Callable[[list[int]], None]) -> None:
        """Pass the ids of jobs created since the last scan to `record`; the scan moves on
        only once `record` returns, so a failure there rescans the same blocks next time."""
        head = int(self.market.chain.w3.eth.block_number)
        if head < self.scan_from:
            return
        record(self.market.jobs_aggregated_by(self.aggregator, self.scan_from, head))
        self.scan_from = head + 1
