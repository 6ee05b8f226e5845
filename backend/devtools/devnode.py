"""A real JSON-RPC dev node (anvil, from the npm package @foundry-rs/anvil) on loopback.

Used by the tests that prove the same code runs against a real node, and by devnet tooling.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx

from backend.core.errors import ChainUnavailable

REPO = Path(__file__).resolve().parents[2]


def find_anvil() -> Path | None:
    """The anvil binary: the npm package under contracts/node_modules, else PATH."""
    candidates = [
        REPO / "contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
        REPO / "contracts/node_modules/.bin/anvil",
    ]
    for c in candidates:
        if c.exists():
            return c
    found = shutil.which("anvil")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_rpc(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until the JSON-RPC node at `url` answers eth_chainId (or `proc` exits, or time is up)."""
    deadline = time.monotonic() + timeout_s
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise ChainUnavailable(f"the node exited at start: {err.strip()}")
        try:
            if httpx.post(url, json=body, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise ChainUnavailable(f"no JSON-RPC node answered on {url} within {timeout_s} s")


class AnvilNode:
    """Start anvil on a free loopback port; `url` once ready; `stop()` (or use as a context)."""

    def __init__(self, port: int | None = None, binary: Path | None = None) -> None:
        self.binary = binary or find_anvil()
        if self.binary is None:
            raise ChainUnavailable(
                "anvil not found: run scripts/install.sh (npm @foundry-rs/anvil)"
            )
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> AnvilNode:
        self.proc = subprocess.Popen(
            [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port), "--silent"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_rpc(self.url, timeout_s, self.proc)
        except ChainUnavailable:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
