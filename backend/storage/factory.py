"""Choosing a store from the settings (kept apart from `base`, which the stores import)."""

from __future__ import annotations

from pathlib import Path

from backend.storage.base import ContentStore
from backend.storage.ipfs import IpfsStore
from backend.storage.local import LocalStore


def open_store(ipfs_api: str | None, store_dir: Path, retries: int = 4) -> ContentStore:
    """The store the settings describe: IPFS when an API address is set, else the local store."""
    if ipfs_api:
        return IpfsStore(ipfs_api, retries=retries)
    return LocalStore(store_dir)
