"""The JSON-RPC backend: a node over HTTP (anvil, a testnet), with anvil's dev keys on demand."""

from __future__ import annotations

from eth_account import Account
from web3 import Web3

from backend.chain.base import Chain
from backend.core.errors import ChainUnavailable

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_DEV_ACCOUNTS = 10


class RpcChain(Chain):
    """A chain behind a JSON-RPC node; its clock moves by anvil's evm_increaseTime."""

    priority_fee_wei = 10**9
    estimate_block = "pending"

    def __init__(
        self, w3: Web3, *, dev_keys: list[str] | None = None, tx_timeout_s: float = 120.0
    ) -> None:
        super().__init__(w3, kind="rpc", dev_keys=dev_keys, tx_timeout_s=tx_timeout_s)

    def advance_time(self, seconds: int) -> int:
        """Move the node's clock forward and mine a block (dev nodes only)."""
        self.w3.provider.make_request("evm_increaseTime", [int(seconds)])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        return self.now()


def anvil_dev_keys() -> list[str]:
    """The hex private keys of anvil's well-known funded accounts (its default mnemonic)."""
    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex()
        for i in range(ANVIL_DEV_ACCOUNTS)
    ]


def rpc_chain(url: str, *, tx_timeout_s: float = 120.0, dev_accounts: bool = False) -> RpcChain:
    """A JSON-RPC node over HTTP. `dev_accounts` exposes anvil's well-known keys."""
    # web3's validation middleware asks the node for eth_chainId on every call and
    # estimate (2-3 round trips per transaction); the chain id cannot change under us.
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}, cache_allowed_requests=True))
    try:
        _ = w3.eth.chain_id  # a cheap call that proves the node answers
    except Exception as exc:
        raise ChainUnavailable(f"no JSON-RPC node answers at {url} ({exc})") from None
    keys = anvil_dev_keys() if dev_accounts else []
    return RpcChain(w3, dev_keys=keys, tx_timeout_s=tx_timeout_s)
