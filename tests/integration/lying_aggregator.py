"""A lying aggregator as its own process, for the integration tests only: it serves job 1 as
`fedmarket aggregator serve` does (post each round once it is due and the previous one is final,
then reveal the round's validation chunk) but flags the honest trainer VICTIM in round 2.

    python tests/integration/lying_aggregator.py PACKAGE.npz VICTIM   (settings from FEDMARKET_*)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from aggregator.round.driver import RoundDriver
from backend.chain.market import JobStatus, MarketClient
from backend.core.valpackage import ValidationPackage
from backend.protocol.connect import open_settings_chain, open_settings_store
from backend.protocol.settings import load_settings
from backend.simulation.disputes import lie

JOB = 1
DEV_ACCOUNT = 2
LIE_IN_ROUND = 2


def main(package_path: str, victim: str) -> int:
    settings = load_settings(None)
    chain = open_settings_chain(settings, dev_accounts=True)
    market = MarketClient.at(chain, str(settings.market_address))
    store = open_settings_store(settings)
    package = ValidationPackage.from_bytes(Path(package_path).read_bytes())
    driver = RoundDriver(market, store, chain.dev_account(DEV_ACCOUNT), JOB, package)
    while market.job(JOB).status_enum == JobStatus.RUNNING:
        driver.reveal_chunk()
        if not driver.ready() or driver.not_final_reason() is not None:
            time.sleep(0.3)
            continue
        pending = driver.compute()
        if pending.round == LIE_IN_ROUND:
            pending = lie(pending, victim)
        driver.post(pending)
        driver.reveal_chunk()
    driver.reveal_chunk()  # the last round's
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
