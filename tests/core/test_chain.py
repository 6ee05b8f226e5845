from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount

from backend.chain.base import MAX_BATCH, Chain
from backend.chain.market import JobParams, MarketClient, commitment_hash
from backend.chain.rpc import rpc_chain
from backend.core.errors import ChainUnavailable, ContractRevert


def _params(aggregator: str, **kw: object) -> JobParams:
    base = dict(
        aggregator=aggregator,
        stake_required=10**17,
        rounds=2,
        min_trainers=1,
        max_trainers=2,
        spec_hash=b"\x01" * 32,
        spec_cid="spec",
        initial_model_hash=b"\x02" * 32,
        initial_model_cid="model",
        validation_root=b"\x03" * 32,
        challenge_window=0,
    )
    base.update(kw)
    return JobParams(**base)  # type: ignore[arg-type]


def test_revert_surfaces_as_project_error_naming_custom_error(
    chain: Chain, market: MarketClient
) -> None:
    trainer = chain.new_funded_account(10**19)
    market.register(trainer, 10**18)
    with pytest.raises(ContractRevert) as info:
        market.register(trainer, 10**18)
    assert info.value.error == "AlreadyRegistered"
    assert "register reverted: AlreadyRegistered(" in str(info.value)
    with pytest.raises(ContractRevert) as info:
        market.withdraw(trainer, 2 * 10**18)
    assert info.value.error == "InsufficientFreeStake"
    assert info.value.args_["requested"] == 2 * 10**18


def test_failed_transaction_changes_nothing(
    chain: Chain, market: MarketClient, new_aggregator: Callable[..., LocalAccount]
) -> None:
    owner = chain.new_funded_account(10**19)
    agg = new_aggregator()
    before = chain.balance(owner.address)
    with pytest.raises(ContractRevert, match="InvalidRounds"):
        market.create_job(owner, _params(agg.address, rounds=0), 10**18)
    assert market.next_job_id() == 1
    assert chain.balance(owner.address) == before  # estimate failed: nothing sent, no gas spent


def test_in_process_gas_estimate_covers_the_gas_used(chain: Chain, market: MarketClient) -> None:
    """The in-process node estimates with one run at the block limit, before refunds: the
    limit it leads to always covers what the mined transaction uses."""
    a = chain.new_funded_account(10**19)
    fn = market.contract.functions.register()
    estimate = int(fn.estimate_gas({"from": a.address, "value": 10**18}))
    used = market.register(a, 10**18).gas_used
    assert used <= estimate <= used + 30_000


def test_calldata_suffixes_are_read_in_bounded_batches(chain: Chain, market: MarketClient) -> None:
    """The aggregator reads each commit's announced CID (calldata after the arguments) in
    batches; a job's 1,024 commits are more than one JSON-RPC batch may carry on some nodes."""
    a = chain.new_funded_account(10**19)
    fn = market.contract.functions.register()
    sent = chain.transact(fn, a, value=10**18, suffix=b"QmAnnounced")
    unknown = [i.to_bytes(32, "big") for i in range(1, MAX_BATCH + 45)]
    tails = chain.call_suffixes([*unknown, bytes.fromhex(sent.tx_hash.removeprefix("0x"))], 0)
    assert tails == [b""] * len(unknown) + [b"QmAnnounced"]


def test_only_the_jobs_aggregator_posts(
    chain: Chain, market: MarketClient, new_aggregator: Callable[..., LocalAccount]
) -> None:
    owner, trainer = (chain.new_funded_account(10**19) for _ in range(2))
    agg = new_aggregator()
    job_id, _ = market.create_job(owner, _params(agg.address, max_trainers=1), 10**18)
    market.register(trainer, 10**18)
    market.join(trainer, job_id)  # max_trainers reached: the job starts
    salt = b"\x05" * 32
    market.commit(
        trainer, job_id, commitment_hash(b"\x09" * 32, "cid", salt, trainer.address, job_id, 1)
    )
    market.reveal(trainer, job_id, b"\x09" * 32, "cid", salt)
    with pytest.raises(ContractRevert) as info:
        market.post_round(owner, job_id, 1, b"\x07" * 32, "m", [1], [0])
    assert info.value.error == "NotAggregator"
    market.post_round(agg, job_id, 1, b"\x07" * 32, "m", [1], [0])
    assert market.job(job_id).currentRound == 2
    with pytest.raises(ContractRevert, match="WrongRound"):
        market.post_round(agg, job_id, 1, b"\x07" * 32, "m", [1], [0])


def test_commitment_hash_matches_contract(
    chain: Chain, market: MarketClient, new_aggregator: Callable[..., LocalAccount]
) -> None:
    owner, trainer = (chain.new_funded_account(10**19) for _ in range(2))
    agg = new_aggregator()
    job_id, _ = market.create_job(owner, _params(agg.address, max_trainers=1), 10**18)
    market.register(trainer, 10**18)
    market.join(trainer, job_id)
    salt = b"\x06" * 32
    market.commit(
        trainer, job_id, commitment_hash(b"\x09" * 32, "cid", salt, trainer.address, job_id, 1)
    )
    with pytest.raises(ContractRevert, match="CommitmentMismatch"):
        market.reveal(trainer, job_id, b"\x09" * 32, "other-cid", salt)
    market.reveal(trainer, job_id, b"\x09" * 32, "cid", salt)
    (rev,) = market.reveals(job_id, 1)
    assert rev.trainer == trainer.address and rev.cid == "cid"


def test_time_travel_on_dev_chain(chain: Chain) -> None:
    t0 = chain.now()
    assert chain.advance_time(3600) >= t0 + 3600


def test_unreachable_node_is_a_clear_error() -> None:
    with pytest.raises(ChainUnavailable, match="no JSON-RPC node answers"):
        rpc_chain("http://127.0.0.1:1")


def test_an_account_holding_its_value_plus_real_gas_can_send(
    chain: Chain, market: MarketClient
) -> None:
    """Estimating at the block gas limit used to demand value + 30M gas × fee (0.03 ETH at
    1 gwei): a trainer holding its stake plus the gas it really needs could not register."""
    trainer = chain.new_funded_account(10**18 + 10**16)  # 1 ETH stake + 0.01 ETH for gas
    market.register(trainer, 10**18)
    assert market.account_of(trainer.address)["balance"] == 10**18


def test_too_little_eth_is_one_clear_error_and_sends_nothing(
    chain: Chain, market: MarketClient
) -> None:
    from backend.core.errors import InsufficientFunds

    poor = chain.new_funded_account(10**17)
    block = chain.w3.eth.block_number
    with pytest.raises(InsufficientFunds, match=r"holds 0\.1 ETH and register needs 1 ETH"):
        market.register(poor, 10**18)
    with pytest.raises(InsufficientFunds, match="createJob needs 5 ETH"):
        market.check_create_job(poor, _params(poor.address), 5 * 10**18)
    assert chain.w3.eth.block_number == block and chain.balance(poor.address) == 10**17


def test_reverts_say_what_to_do_and_keep_the_raw_error(
    chain: Chain, market: MarketClient, new_aggregator: Callable[..., LocalAccount]
) -> None:
    owner = chain.new_funded_account(10**19)
    job_id, _ = market.create_job(owner, _params(new_aggregator().address), 10**18)
    with pytest.raises(ContractRevert) as info:
        market.finalize(owner, job_id)
    text = str(info.value)
    assert text.startswith(f"cannot finalize: job {job_id} is open for joining")
    assert f"finalize reverted: WrongStatus(jobId={job_id}, status=1)" in text


def test_every_custom_error_of_the_contract_is_explained() -> None:
    """A user who hits any of them gets a sentence, not only `Name(args)`."""
    from backend.chain.contracts import load_artifact
    from backend.chain.revert_messages import explain

    errors = [
        i
        for name in ("FedMarket", "DisputeCourt", "ReliabilityRegistry")
        for i in load_artifact(name)["abi"]
        if i["type"] == "error"
    ]
    assert len(errors) > 50
    for item in errors:
        args = {
            i["name"]: 1 if i["type"].startswith(("uint", "int")) else "0x1" for i in item["inputs"]
        }
        assert explain("claim", item["name"], args), item["name"]
