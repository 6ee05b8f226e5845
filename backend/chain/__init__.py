"""The chain adapter: one `Chain` interface over web3 with a module per backend (in-process,
persistent in-process, JSON-RPC), revert decoding, the typed FedMarket client, keystores and the
committed contract artifacts.

May import: `backend.core`.
"""
