"""The chain and the store that the settings name: one way to open them, for every role.

Owner, trainers, aggregator and auditors must see the same market with no settings at all, so
the default lives here once: the persistent in-process chain at ``<home>/chain.jsonl`` (shared
by separate invocations on one machine) and the local store at ``<home>/store``.
"""

from __future__ import annotations

from pathlib import Path

from backend.chain.base import Chain
from backend.core.errors import ConfigError
from backend.protocol.settings import Settings
from backend.storage import ContentStore, open_store


def chain_journal(settings: Settings) -> Path | None:
    """The journal of the persistent in-process chain the settings name (None: a node)."""
    from backend.chain.persistent import parse_chain_url

    path = parse_chain_url(settings.rpc_url)
    if path is not None:
        return path
    if settings.rpc_url:
        return None
    return Path(settings.chain_file or Path(settings.home) / "chain.jsonl").expanduser()


def open_settings_chain(settings: Settings, *, dev_accounts: bool = False) -> Chain:
    """A JSON-RPC node when `rpc_url` is a URL, else the persistent in-process chain."""
    from backend.chain.persistent import PersistentEmbeddedChain
    from backend.chain.rpc import rpc_chain

    journal = chain_journal(settings)
    if journal is not None:
        chain: Chain = PersistentEmbeddedChain.open(journal)
    else:
        assert settings.rpc_url is not None
        chain = rpc_chain(
            settings.rpc_url, tx_timeout_s=settings.tx_timeout_s, dev_accounts=dev_accounts
        )
    if settings.chain_id is not None and chain.chain_id != settings.chain_id:
        raise ConfigError(
            f"chain id {chain.chain_id} is not the expected {settings.chain_id}: "
            "check FEDMARKET_RPC_URL and chain_id in the settings"
        )
    return chain


def open_settings_store(settings: Settings) -> ContentStore:
    """IPFS when `ipfs_api` is set, else the local store under the home directory."""
    assert settings.store_dir is not None  # filled in by Settings
    return open_store(settings.ipfs_api, Path(settings.store_dir), retries=settings.storage_retries)
