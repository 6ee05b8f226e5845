"""What the process-level integration tests share: a real node (anvil) and a real IPFS daemon
with the environment that points `fedmarket` at them, and running or waiting on the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.devtools.devnet import IpfsDaemon
from backend.devtools.devnode import AnvilNode, free_port


def cli(*args: str) -> list[str]:
    """The argv of `fedmarket ARGS...` in this interpreter."""
    return [sys.executable, "-m", "backend.cli.main", *args]


def run_cli(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """Run `fedmarket ARGS...` to completion; its stdout (a failure fails the test)."""
    proc = subprocess.run(cli(*args), env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"fedmarket {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def wait_for(pred: Callable[[], bool], timeout: float, what: str, poll_s: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def devnet_at(home: Path) -> Iterator[tuple[Path, AnvilNode, dict[str, str]]]:
    """Anvil and an IPFS daemon for `home`; yields (home, node, env for `fedmarket`)."""
    with AnvilNode() as node:
        ipfs = IpfsDaemon(
            home / "ipfs",
            api_port=free_port(),
            swarm_port=free_port(),
            gateway_port=free_port(),
            grpc_port=free_port(),
        )
        ipfs.start(log=home / "ipfs.log")
        env = {
            **os.environ,
            "FEDMARKET_HOME": str(home),
            "FEDMARKET_RPC_URL": node.url,
            "FEDMARKET_IPFS_API": ipfs.api,
            "FEDMARKET_CONFIG": str(home / "config.toml"),
        }
        try:
            yield home, node, env
        finally:
            ipfs.stop()
