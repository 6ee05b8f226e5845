"""`fedmarket aggregator`: option parsing, key loading and clear errors."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from typer.testing import CliRunner

from backend.cli.aggregator import load_account, parse_validation
from backend.cli.main import app
from backend.core.errors import ConfigError


def test_parse_validation(tmp_path) -> None:
    f = tmp_path / "v.npz"
    f.write_bytes(b"x")
    assert parse_validation([f"3={f}", f"12={f}"]) == {3: f, 12: f}
    for bad in ("3", f"x={f}", "4=", f"5={tmp_path / 'nope.npz'}"):
        with pytest.raises(ConfigError):
            parse_validation([bad])


def test_load_account_from_keystore_and_dev_chain(tmp_path, monkeypatch, chain) -> None:
    acct = Account.create()
    ks = tmp_path / "agg.json"
    ks.write_text(json.dumps(Account.encrypt(acct.key, "pw", kdf="pbkdf2", iterations=1000)))
    monkeypatch.setenv("FEDMARKET_PASSWORD", "pw")
    assert load_account(ks, None, chain).address == acct.address
    monkeypatch.setenv("FEDMARKET_PASSWORD", "wrong")
    with pytest.raises(ConfigError, match="wrong password for keystore"):
        load_account(ks, None, chain)
    ks.write_text("{}")
    with pytest.raises(ConfigError, match="not a valid keystore file"):
        load_account(ks, None, chain)
    assert load_account(None, 2, chain).address == chain.dev_account(2).address
    with pytest.raises(ConfigError):
        load_account(None, None, chain)
    with pytest.raises(ConfigError):
        load_account(ks, 1, chain)


def test_serve_before_deploy_fails_in_one_line(tmp_path, monkeypatch) -> None:
    """On the default chain (no node needed), with no market yet: say to deploy."""
    monkeypatch.delenv("FEDMARKET_RPC_URL", raising=False)
    monkeypatch.delenv("FEDMARKET_MARKET_ADDRESS", raising=False)
    monkeypatch.setenv("FEDMARKET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FEDMARKET_CONFIG", str(tmp_path / "none.toml"))
    result = CliRunner().invoke(app, ["aggregator", "serve", "--dev-account", "1"])
    assert result.exit_code == 1
    assert "error: no market address: run `fedmarket deploy`" in result.output
    help_text = CliRunner().invoke(app, ["aggregator", "serve", "--help"]).output
    for opt in ("--validation", "--validation-dir", "--keystore", "--dev-account", "--port"):
        assert opt in help_text
