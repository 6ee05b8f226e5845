"""`fedmarket devnet ...`: a local devnet of real parts (a dev tool, not a role)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from backend.cli.common import fail, out
from backend.core.errors import FedMarketError

devnet_app = typer.Typer(help="A local devnet of real parts: anvil + an IPFS daemon on loopback.")


@devnet_app.command("up")
def devnet_up_cmd(
    rpc_port: Annotated[int, typer.Option(help="anvil's port")] = 8545,
    ipfs_port: Annotated[int, typer.Option(help="the IPFS RPC API port")] = 5001,
) -> None:
    """Start anvil and the IPFS daemon (installing the daemon if missing); write the settings."""
    from backend.devtools.devnet import devnet_up
    from backend.protocol.settings import load_settings

    try:
        state = devnet_up(load_settings().home, rpc_port=rpc_port, ipfs_port=ipfs_port)
    except (FedMarketError, OSError) as exc:
        fail(exc)
        return
    out.print(
        f"devnet up: rpc_url={state['rpc_url']} ipfs_api={state['ipfs_api']}", highlight=False
    )


@devnet_app.command("down")
def devnet_down_cmd() -> None:
    """Stop the devnet's processes."""
    from backend.devtools.devnet import devnet_down
    from backend.protocol.settings import load_settings

    stopped = devnet_down(load_settings().home)
    out.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@devnet_app.command("status")
def devnet_status_cmd() -> None:
    """Say what runs and where."""
    from backend.devtools.devnet import devnet_status
    from backend.protocol.settings import load_settings

    out.print_json(json.dumps(devnet_status(load_settings().home)))
