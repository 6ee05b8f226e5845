"""Revert decoding: from whatever web3 or eth-tester raised to one `ContractRevert`.

Custom-error selectors are looked up in the ABIs the chain has loaded; `Error(string)` and
`Panic(uint256)` are decoded too. The explanatory sentence comes from `revert_messages`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector
from web3.exceptions import ContractCustomError, ContractLogicError

from backend.chain.revert_messages import explain
from backend.core.errors import ContractRevert

_PANIC_SELECTOR = bytes.fromhex("4e487b71")
_ERROR_SELECTOR = bytes.fromhex("08c379a0")
_HEX_RE = re.compile(r"0x[0-9a-fA-F]{8,}")


def contract_revert(
    function: str, error: str, args: Mapping[str, Any] | None = None
) -> ContractRevert:
    """A ContractRevert carrying the sentence that says what `error` means to its user."""
    args = dict(args or {})
    return ContractRevert(function, error, args, explanation=explain(function, error, args))


class ErrorDecoder:
    """Maps 4-byte custom-error selectors from contract ABIs to names and argument names."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]] = ()) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            self.add(abi)

    def add(self, abi: list[dict[str, Any]]) -> None:
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [_abi_type(i) for i in item.get("inputs", [])]
            names = [i.get("name") or f"arg{n}" for n, i in enumerate(item.get("inputs", []))]
            sig = f"{item['name']}({','.join(types)})"
            self._errors[function_signature_to_4byte_selector(sig)] = (item["name"], types, names)

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        selector, body = data[:4], data[4:]
        if selector == _ERROR_SELECTOR:
            (msg,) = abi_decode(["string"], body)
            return "Error", {"message": msg}
        if selector == _PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], body)
            return "Panic", {"code": hex(code)}
        if selector in self._errors:
            name, types, names = self._errors[selector]
            try:
                values = abi_decode(types, body)
            except Exception:
                return name, {}
            return name, dict(zip(names, values, strict=True))
        if not data:
            return "Revert", {}
        return "UnknownError", {"data": "0x" + data.hex()}

    def to_revert(self, function: str, exc: BaseException) -> ContractRevert:
        """`exc`, raised by calling or sending `function`, as the project's ContractRevert."""
        data = revert_data(exc)
        if data is None:
            return contract_revert(function, "Error", {"message": str(exc)})
        name, args = self.decode(data)
        if name == "Revert" and str(exc):
            args = {"message": str(exc)}
        return contract_revert(function, name, args)


def _abi_type(item: dict[str, Any]) -> str:
    t = item["type"]
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){t[5:]}"
    return t


def revert_data(exc: BaseException) -> bytes | None:
    """Dig the raw revert data out of whatever exception web3 / eth-tester raised."""
    candidates: list[Any] = [getattr(exc, "data", None), *getattr(exc, "args", ())]
    for cand in candidates:
        if isinstance(cand, bytes | bytearray):
            return bytes(cand)
        if isinstance(cand, str):
            m = _HEX_RE.search(cand)
            if m:
                return bytes.fromhex(m.group(0)[2:])
        if isinstance(cand, dict) and "data" in cand:
            inner = cand["data"]
            if isinstance(inner, str) and inner.startswith("0x"):
                return bytes.fromhex(inner[2:])
    if isinstance(exc, ContractLogicError | ContractCustomError):
        return b""
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        return revert_data(cause)
    return None
