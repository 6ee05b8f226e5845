"""The committed artifacts are exactly what a fresh compile produces, and deployable."""

from __future__ import annotations

import shutil

import pytest

from backend.chain.contracts import load_artifact
from backend.devtools.compile import ARTIFACTS_DIR, NODE_MODULES, artifact_json

EIP170_LIMIT = 24_576


@pytest.mark.parametrize(
    "name",
    [
        "FedMarket",
        "DisputeCourt",
        "ReliabilityRegistry",
        "FedMarketSeparatePost",
        "ReentrantClaimer",
    ],
)
def test_committed_artifact_shape(name: str) -> None:
    art = load_artifact(name)
    assert art["contractName"] == name
    assert art["bytecode"].startswith("0x") and len(art["bytecode"]) > 2
    assert (len(art["deployedBytecode"]) - 2) // 2 < EIP170_LIMIT
    settings = art["compiler"]["settings"]
    assert settings["viaIR"] is True and settings["evmVersion"] == "cancun"
    assert settings["metadata"] == {"appendCBOR": False, "bytecodeHash": "none"}
    assert all(not k.startswith("/") for k in art["sourceSha256"])


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH (needed by solc-js)")
@pytest.mark.skipif(
    not NODE_MODULES.is_dir(), reason="contracts/node_modules missing (npm install)"
)
def test_recompile_reproduces_committed_artifacts() -> None:
    from backend.devtools.compile import compile_contracts

    fresh = compile_contracts()
    committed = sorted(p.stem for p in ARTIFACTS_DIR.glob("*.json"))
    assert sorted(fresh) == committed
    for name, artifact in fresh.items():
        on_disk = (ARTIFACTS_DIR / f"{name}.json").read_text(encoding="utf-8")
        assert on_disk == artifact_json(artifact), (
            f"{name}.json is stale: run scripts/compile_contracts.py"
        )
