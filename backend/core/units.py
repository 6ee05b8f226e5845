"""The units every party counts in, defined once: wei, fixed-point scores, parts per million.

They mirror the contract (FedMarket.sol: scores carry 6 decimals, reliability is in ppm).
"""

from __future__ import annotations

from decimal import Decimal

ETHER = 10**18  # wei per ETH
SCORE_ONE = 1_000_000  # a contribution score of 1.0 on chain (6 decimals)
PPM = 1_000_000  # reliability and its EMA weight are parts per million


def score_value(fixed: int) -> float:
    """A fixed-point score as read from the chain, as a float (1_000_000 → 1.0)."""
    return int(fixed) / SCORE_ONE


def eth_text(wei: int | str) -> str:
    """An amount of wei as exact decimal ETH, e.g. 1.5 (for messages)."""
    return f"{Decimal(int(wei)) / ETHER:f}"
