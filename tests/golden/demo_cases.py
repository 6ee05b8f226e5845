"""The demo's golden runs: its `--json` summary for fixed seeds, through the real CLI.

The demo makes fresh keys with `Account.create`; the round's checks run in address order, so the
golden runs draw those keys from a fixed sequence instead. The validation salts are secret random
bytes and sit in the calldata of createJob (via the root) and postRound, whose gas depends on their
zero bytes: the golden runs draw them from a fixed sequence too. Left out: the temp store path
and the submit gas (commitments carry a random salt, so their zero bytes vary).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eth_account import Account
from typer.testing import CliRunner

from backend.cli.main import app
from backend.core import valpackage

GOLDEN = Path(__file__).with_name("demo_golden.json")
DEMOS = {
    "label_flip/consensus/audit": [
        "--trainers",
        "4",
        "--attackers",
        "1",
        "--rounds",
        "2",
        "--attack",
        "label_flip",
        "--non-iid",
        "0.5",
        "--audit",
    ],
    "noise/multi_krum/shapley/int8": [
        "--trainers",
        "4",
        "--attackers",
        "1",
        "--rounds",
        "2",
        "--attack",
        "noise",
        "--rule",
        "multi_krum",
        "--scoring",
        "shapley",
        "--codec",
        "int8",
        "--seed",
        "5",
    ],
}


@contextmanager
def fixed_keys() -> Iterator[None]:
    counter = itertools.count()
    original = Account.create

    def create(*_: Any, **__: Any) -> Any:
        return Account.from_key(hashlib.sha256(b"golden-%d" % next(counter)).digest())

    salt_counter = itertools.count()

    def new_salts(rounds: int) -> list[bytes]:
        return [hashlib.sha256(b"salt-%d" % next(salt_counter)).digest() for _ in range(rounds)]

    original_salts = valpackage.new_salts
    Account.create = create  # type: ignore[method-assign]
    valpackage.new_salts = new_salts
    try:
        yield
    finally:
        Account.create = original  # type: ignore[method-assign]
        valpackage.new_salts = original_salts


def demo_summary(args: list[str]) -> dict[str, Any]:
    with fixed_keys():
        result = CliRunner().invoke(app, ["demo", *args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    summary.pop("store")
    summary["gas"].pop("submit")
    return summary


if __name__ == "__main__":
    GOLDEN.write_text(
        json.dumps({k: demo_summary(a) for k, a in DEMOS.items()}, indent=1, sort_keys=True) + "\n"
    )
    print(f"wrote {GOLDEN}")
