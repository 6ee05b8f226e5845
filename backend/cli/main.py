"""The `fedmarket` command: one entry point, a subcommand group per role."""

from __future__ import annotations

import typer

from backend.cli.account import account_app, deploy_cmd
from backend.cli.aggregator import aggregator_app
from backend.cli.audit import api_app, audit_app
from backend.cli.data import data_app
from backend.cli.demo import demo_cmd
from backend.cli.devnet import devnet_app
from backend.cli.owner import owner_app
from backend.cli.simulate import simulate_cmd
from backend.cli.trainer import trainer_app
from backend.cli.verifier import verifier_app

app = typer.Typer(
    name="fedmarket",
    help="A blockchain-backed federated-learning marketplace: owners post jobs with escrowed "
    "rewards, trainers stake and submit pseudo-gradients, an aggregator scores and aggregates "
    "them, contracts pay by proof of contribution. Runs on an in-process EVM and a local store "
    "by default; set FEDMARKET_RPC_URL / FEDMARKET_IPFS_API for a real node and IPFS daemon.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """fedmarket: subcommands per role (demo, owner, trainer, aggregator, audit, ...)."""


# The order of registration is the order of `fedmarket --help`.
app.command("demo")(demo_cmd)
app.command("simulate")(simulate_cmd)
app.add_typer(aggregator_app, name="aggregator")
app.add_typer(audit_app, name="audit")
app.add_typer(api_app, name="api")
app.add_typer(account_app, name="account")
app.command("deploy")(deploy_cmd)
app.add_typer(owner_app, name="owner")
app.add_typer(trainer_app, name="trainer")
app.add_typer(verifier_app, name="verifier")
app.add_typer(data_app, name="data")
app.add_typer(devnet_app, name="devnet")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
