"""One settings object for every role: flags > environment (FEDMARKET_*) > TOML file > defaults.

With nothing set, fedmarket runs on the embedded default: an in-process EVM and a local
content-addressed store on disk.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path(os.environ.get("FEDMARKET_HOME", Path.home() / ".fedmarket"))


def _home_now() -> Path:
    """FEDMARKET_HOME as it is now (not at import time), else ~/.fedmarket."""
    return Path(os.environ.get("FEDMARKET_HOME", Path.home() / ".fedmarket")).expanduser()


class Settings(BaseSettings):
    """Where the chain and the store are, and where local state lives."""

    model_config = SettingsConfigDict(env_prefix="FEDMARKET_", extra="ignore")

    rpc_url: str | None = Field(
        None,
        description="JSON-RPC URL of a node, or embedded:<journal path> for a persistent "
        "in-process dev chain; unset = in-process EVM (role commands: <home>/chain.jsonl)",
    )
    chain_file: Path | None = Field(
        None,
        description="journal of a persistent in-process dev chain (see backend.chain.persistent)",
    )
    ipfs_api: str | None = Field(
        None,
        description="Kubo RPC API multiaddr, e.g. /ip4/127.0.0.1/tcp/5001; unset = local store",
    )
    store_dir: Path | None = Field(None, description="local content-addressed store (<home>/store)")
    home: Path = Field(
        default_factory=_home_now, description="keystores, state files, indexer database"
    )
    market_address: str | None = Field(None, description="deployed FedMarket contract address")
    chain_id: int | None = Field(None, description="expected chain id (checked when set)")
    tx_timeout_s: float = Field(120.0, description="how long to wait for a receipt")
    storage_retries: int = Field(4, description="retries (with backoff) for a storage daemon")

    @model_validator(mode="after")
    def _store_under_home(self) -> Settings:
        if self.store_dir is None:
            self.store_dir = self.home / "store"
        return self

    @property
    def config_path(self) -> Path:
        return self.home / "config.toml"

    @property
    def embedded_chain(self) -> bool:
        return not self.rpc_url

    @property
    def embedded_store(self) -> bool:
        return not self.ipfs_api


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings: explicit overrides (flags) win over FEDMARKET_* env over the TOML file."""
    file_values: dict[str, Any] = {}
    path = config_file or _default_config_path()
    if path is not None and path.exists():
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        file_values = dict(data.get("fedmarket", data))
    env_keys = {name for name in Settings.model_fields if f"FEDMARKET_{name.upper()}" in os.environ}
    merged = {k: v for k, v in file_values.items() if k not in env_keys}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**merged)


def _default_config_path() -> Path | None:
    env = os.environ.get("FEDMARKET_CONFIG")
    if env:
        return Path(env)
    return _home_now() / "config.toml"
