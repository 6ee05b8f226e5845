"""The dashboard in a real headless Chromium: charts render with one point per round."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.audit.conftest import ROUNDS, TRAINERS

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _missing() -> str | None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"chromium not found at {CHROMIUM} (run scripts/install_browser.sh)"
    if shutil.which("node") is None:
        return "node not found (run scripts/install_browser.sh)"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core not installed in tests/browser (run scripts/install_browser.sh)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(indexed):
    import uvicorn

    from backend.audit.api import create_api

    port = _free_port()
    app = create_api(indexed.db_url, store=indexed.m.store)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def _render(served: str, job_id: int, shot: Path, trainer: str | None = None) -> dict:
    env = {
        **os.environ,
        "CHROMIUM": CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
    }
    shot.unlink(missing_ok=True)
    who = f"&trainer={trainer}" if trainer else ""
    proc = subprocess.run(
        ["node", str(BROWSER_DIR / "dashboard.js"), f"{served}/#job={job_id}{who}", str(shot)],
        cwd=BROWSER_DIR,
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["ready"] == "1", seen
    assert seen["console_errors"] == [] and seen["external_requests"] == [], seen
    assert seen["jobs"] == 3
    return seen


def test_dashboard_renders_in_chromium(served, indexed) -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    seen = _render(served, 1, shot, indexed.attacker)
    assert seen["total_points"] == ROUNDS  # one point per posted round
    assert seen["metric_points"] == 2 * (ROUNDS + 1)  # accuracy + loss, initial model + rounds
    assert seen["contrib_bars"] == (TRAINERS - 1) * ROUNDS  # honest trainers' scores, stacked
    assert seen["flag_marks"] == ROUNDS  # the attacker, flagged every round
    assert seen["count_bars"] == 3 * ROUNDS
    assert seen["payout_rows"] == 2 * TRAINERS and seen["reliability_bars"] == TRAINERS
    assert seen["flag_rows"] == ROUNDS
    # "why this reward" for the trainer named in the URL: the attacker, slashed every round
    assert seen["explain_selected"] == indexed.attacker
    assert seen["explain_rows"] == seen["explain_flagged"] == seen["explain_slashes"] == ROUNDS
    assert seen["explain_reliability"] == 1
    assert shot.exists() and shot.stat().st_size > 10_000


def test_dashboard_shows_a_disputed_job_by_its_results_of_record(served) -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    ARTIFACTS.mkdir(exist_ok=True)
    seen = _render(served, 2, ARTIFACTS / "dashboard-disputed.png")
    assert seen["total_points"] == 2
    # the false flag was corrected: no cross, and the flags card has no table at all
    assert seen["flag_marks"] == 0 and seen["flag_rows"] == -1
    assert seen["contrib_bars"] == 3 * 2
