"""Compile fedmarket's Solidity contracts and read the committed artifacts.

Compiling needs node plus ``contracts/node_modules`` (solc-js and OpenZeppelin): py-solc-x
drives ``scripts/solc``, a small node shim over solc-js, through ``--standard-json``.
Reading artifacts (:func:`load_artifact`) needs neither: the JSON files under
``backend/chain/artifacts/`` are committed and shipped as package data.

Settings are fixed (optimizer 200 runs, viaIR, cancun, no metadata hash, no CBOR trailer) and
source keys are repository-relative, so a compile is reproducible byte for byte on any clone.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
NODE_MODULES = CONTRACTS_DIR / "node_modules"
SOLC_SHIM = REPO_ROOT / "scripts" / "solc"
ARTIFACTS_DIR = REPO_ROOT / "backend" / "chain" / "artifacts"

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "viaIR": True,
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "none", "appendCBOR": False},
    "remappings": ["@openzeppelin/=contracts/node_modules/@openzeppelin/"],
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]},
    },
}


class CompileError(RuntimeError):
    """solc reported errors (the message lists them)."""


def source_files() -> list[str]:
    """Repository-relative paths of every project .sol file (node_modules excluded), sorted."""
    paths = [
        p.relative_to(REPO_ROOT).as_posix()
        for p in CONTRACTS_DIR.rglob("*.sol")
        if "node_modules" not in p.relative_to(CONTRACTS_DIR).parts
    ]
    return sorted(paths)


def _read_source(rel: str) -> str:
    return (REPO_ROOT / rel).read_text(encoding="utf-8")


def _resolve_import(rel: str) -> Path:
    """Filesystem path of a source key as solc saw it (after remapping)."""
    return REPO_ROOT / rel


def solc_version() -> str:
    """Version string reported by the solc-js shim, e.g. ``0.8.37+commit.f401782d...``."""
    out = subprocess.run(
        [str(SOLC_SHIM), "--version"], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"Version:\s*(\S+)", out)
    if not match:
        raise CompileError(f"cannot parse solc version from {out!r}")
    return match.group(1)


def _standard_input() -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {rel: {"content": _read_source(rel)} for rel in source_files()},
        "settings": SETTINGS,
    }


def _raw_compile() -> dict[str, Any]:
    import solcx  # imported lazily: reading artifacts must not need the compiler stack

    if not NODE_MODULES.is_dir():
        raise CompileError(f"{NODE_MODULES} missing: run `npm install` in contracts/")
    try:
        output: dict[str, Any] = solcx.compile_standard(
            _standard_input(),
            base_path=str(REPO_ROOT),
            solc_binary=str(SOLC_SHIM),
        )
    except solcx.exceptions.SolcError as exc:  # type: ignore[attr-defined]
        raise CompileError(str(exc)) from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", str(e)) for e in errors))
    return output


def compile_contracts() -> dict[str, dict[str, Any]]:
    """Compile every .sol file under contracts/ and return artifacts keyed by contract name.

    Each artifact is the dict :func:`write_artifacts` stores: ``contractName``, ``abi``,
    ``bytecode``, ``deployedBytecode`` (0x-prefixed hex), ``compiler`` (version, settings) and
    ``sourceSha256`` (sha256 of every source in the compilation, keyed by relative path).
    """
    output = _raw_compile()
    version = solc_version()
    hashes = {
        rel: hashlib.sha256(_resolve_import(rel).read_bytes()).hexdigest()
        for rel in sorted(output.get("sources", {}))
    }
    artifacts: dict[str, dict[str, Any]] = {}
    for rel in sorted(output.get("contracts", {})):
        if rel not in source_files():
            continue  # library contracts (OpenZeppelin) are not artifacts of their own
        for name, data in sorted(output["contracts"][rel].items()):
            if not data["evm"]["bytecode"]["object"]:
                continue  # abstract contracts (StakeVault, ReliabilityLedger) deploy nothing
            if name in artifacts:
                raise CompileError(f"duplicate contract name {name}")
            artifacts[name] = {
                "contractName": name,
                "sourcePath": rel,
                "abi": data["abi"],
                "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                "compiler": {"version": version, "settings": SETTINGS},
                "sourceSha256": hashes,
            }
    return artifacts


def artifact_json(artifact: dict[str, Any]) -> str:
    """Canonical serialization: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(artifact, sort_keys=True, indent=2) + "\n"


def write_artifacts(
    directory: Path | str = ARTIFACTS_DIR,
    artifacts: dict[str, dict[str, Any]] | None = None,
) -> list[Path]:
    """Compile (unless ``artifacts`` is given) and write ``<directory>/<Name>.json`` files."""
    if artifacts is None:
        artifacts = compile_contracts()
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, artifact in sorted(artifacts.items()):
        path = out_dir / f"{name}.json"
        path.write_text(artifact_json(artifact), encoding="utf-8")
        written.append(path)
    return written
