"""Keys in encrypted keystore files (eth-account keystore JSON v3, scrypt), never in the clear.

Each key is ``<home>/keystore/<name>.json`` (mode 0600). The password comes from the caller
(a prompt, or FEDMARKET_PASSWORD); nothing here prints or logs a key or a password.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from backend.core.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class KeystoreEntry:
    name: str
    address: str
    path: Path


class Keystore:
    """A directory of encrypted keystore files."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def _path(self, name: str) -> Path:
        if not _NAME_RE.match(name) or name.startswith("."):
            raise ConfigError(f"account name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        return self.dir / f"{name}.json"

    def _write(self, name: str, key: bytes, password: str) -> KeystoreEntry:
        if not password:
            raise ConfigError("an empty password is not allowed")
        path = self._path(name)
        if path.exists():
            raise ConfigError(f"an account named {name!r} already exists ({path})")
        address = Account.from_key(key).address
        if any(e.address == address for e in self.list()):
            raise ConfigError(f"the key of {address} is already in the keystore")
        encrypted = Account.encrypt(key, password)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(encrypted, fh)
        return KeystoreEntry(name, address, path)

    def new(self, name: str, password: str) -> KeystoreEntry:
        """Generate a fresh key and store it encrypted."""
        return self._write(name, bytes(Account.create().key), password)

    def import_key(self, name: str, private_key: str, password: str) -> KeystoreEntry:
        """Store an existing private key (hex, with or without 0x) encrypted."""
        raw = private_key.strip().removeprefix("0x")
        try:
            key = bytes.fromhex(raw)
            if len(key) != 32:
                raise ValueError
            Account.from_key(key)
        except ValueError:
            raise ConfigError("not a private key: expected 64 hex digits") from None
        return self._write(name, key, password)

    def list(self) -> list[KeystoreEntry]:
        if not self.dir.exists():
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                address = Web3.to_checksum_address("0x" + json.loads(path.read_text())["address"])
            except Exception:
                continue
            out.append(KeystoreEntry(path.stem, address, path))
        return out

    def find(self, name_or_address: str) -> KeystoreEntry:
        for entry in self.list():
            if entry.name == name_or_address or entry.address.lower() == name_or_address.lower():
                return entry
        known = ", ".join(e.name for e in self.list()) or "none"
        raise ConfigError(
            f"no account {name_or_address!r} in {self.dir} (known: {known}); "
            "create one with `fedmarket account new NAME`"
        )

    def unlock(self, name_or_address: str, password: str) -> LocalAccount:
        entry = self.find(name_or_address)
        return decrypt_keystore_file(entry.path, password, f"account {entry.name!r}")


def decrypt_keystore_file(path: Path, password: str, what: str | None = None) -> LocalAccount:
    """The key in an encrypted keystore JSON file, with errors a user can act on."""
    what = what or f"keystore {path}"
    try:
        encrypted = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what}: {exc}") from None
    try:
        key = Account.decrypt(encrypted, password)
    except ValueError as exc:
        # eth-account says "MAC mismatch" for a wrong password; anything else is a broken file.
        if "MAC mismatch" in str(exc):
            raise ConfigError(f"wrong password for {what}") from None
        raise ConfigError(f"{what} is not a valid keystore file ({exc})") from None
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{what} is not a valid keystore file (missing {exc})") from None
    return Account.from_key(key)
