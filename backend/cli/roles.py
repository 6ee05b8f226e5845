"""`fedmarket account|deploy|owner|trainer`: the roles as commands people run on their machines.

Every command reads one Settings object (flags > FEDMARKET_* environment > TOML file), talks to
the chain it names — a JSON-RPC node (FEDMARKET_RPC_URL=http://...) or, by default, a persistent
in-process dev chain whose journal is <home>/chain.jsonl (FEDMARKET_RPC_URL=embedded:<path>
picks another file) — and the content store (IPFS with FEDMARKET_IPFS_API, else <home>/store).
Errors print one line `error: ...` on stderr and exit 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from backend.cli.common import AccountOpt, guarded, password, stage_progress
from backend.core.errors import ConfigError, FedMarketError, eth_text

ETHER = 10**18
out = Console(width=None if sys.stdout.isatty() else 132, highlight=False)
err = Console(stderr=True, highlight=False)


def _emit(line: str) -> None:
    """A machine-readable line on stdout (never wrapped)."""
    sys.stdout.write(line + "\n")


# -- shared options -------------------------------------------------------------------------
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: <home>/config.toml)"),
]
DevAccountOpt = Annotated[
    int | None,
    typer.Option(
        "--dev-account",
        help="use the dev chain's well-known account N instead of a keystore (dev chains only)",
    ),
]
JobArg = Annotated[int, typer.Argument(help="the job id", min=1)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print a JSON line instead of text")]


class Ctx:
    """Settings, chain, store and market, opened lazily for one command."""

    def __init__(self, config: Path | None, dev_account: int | None = None) -> None:
        from backend.protocol.settings import load_settings

        self.settings = load_settings(config)
        self.config_file = config
        self.want_dev = dev_account is not None
        self._chain: Any = None
        self._store: Any = None

    @property
    def home(self) -> Path:
        return Path(self.settings.home)

    @property
    def chain(self) -> Any:
        if self._chain is None:
            from backend.protocol.connect import open_settings_chain

            self._chain = open_settings_chain(self.settings, dev_accounts=self.want_dev)
        return self._chain

    @property
    def store(self) -> Any:
        if self._store is None:
            from backend.protocol.connect import open_settings_store

            self._store = open_settings_store(self.settings)
        return self._store

    def market(self) -> Any:
        from backend.chain.market import MarketClient

        if not self.settings.market_address:
            raise ConfigError(
                "no market address: run `fedmarket deploy`, or set FEDMARKET_MARKET_ADDRESS"
            )
        return MarketClient.at(self.chain, self.settings.market_address)

    def keystore(self) -> Any:
        from backend.chain.accounts import Keystore

        return Keystore(self.home / "keystore")

    def signer(self, account: str | None, dev_account: int | None) -> Any:
        if account and dev_account is not None:
            raise ConfigError("give either --account or --dev-account, not both")
        if dev_account is not None:
            if not self.chain.dev_keys:
                raise ConfigError("this chain exposes no dev accounts; use --account NAME")
            if not 0 <= dev_account < len(self.chain.dev_keys):
                raise ConfigError(f"--dev-account must be 0..{len(self.chain.dev_keys) - 1}")
            return self.chain.dev_account(dev_account)
        ks = self.keystore()
        if not account:
            entries = ks.list()
            if len(entries) != 1:
                raise ConfigError(
                    "say which key signs: --account NAME (see `fedmarket account list`) "
                    "or --dev-account N on a dev chain"
                )
            account = entries[0].name
        return ks.unlock(account, password(f"password for account {account}"))

    def job(self, market: Any, job_id: int) -> Any:
        from backend.chain.market import JobStatus

        job = market.job(job_id)
        if job.status_enum == JobStatus.NONE:
            raise ConfigError(f"there is no job {job_id} on market {market.address}")
        return job


def writable_file(path: Path, what: str) -> Path:
    """`path` if a file can be written there (checked before any work is done)."""
    path = path.expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; give a file name")
    if not parent.is_dir():
        raise ConfigError(f"{what} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{what} {path}: directory {parent} is not writable")
    return path


def atomic_write(path: Path, blob: bytes) -> None:
    """Write all of `blob` or nothing (a temp file renamed over the target)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


def to_wei(value: str | float | int, what: str, max_wei: int | None = None) -> int:
    try:
        wei = Decimal(str(value)) * ETHER
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not a number of ETH") from None
    if wei < 0 or wei != wei.to_integral_value():
        raise ValueError(f"{what}: {value!r} ETH is not a whole number of wei >= 0")
    if max_wei is not None and wei > max_wei:
        raise ValueError(f"{what}: {value!r} ETH is above the most the contract holds")
    return int(wei)


def eth(wei: int) -> str:
    return f"{eth_text(wei)} ETH"


def _field(key: str, value: Any, width: int) -> str:
    """A status line for people: `stake_wei` (a JSON key, in wei) shows as `stake  1.5 ETH`."""
    if key.endswith("_wei"):
        label = key.removesuffix("_wei").replace("_", " ")
        return f"{label:<{width}} {'-' if value is None else eth(value)}"
    return f"{key.replace('_', ' '):<{width}} {value}"


def _write_config(path: Path, updates: dict[str, Any]) -> None:
    """Update top-level scalar keys of a TOML settings file (kept simple: scalars only)."""
    data: dict[str, Any] = {}
    if path.exists():
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    table = data.get("fedmarket", data)
    table.update(updates)
    lines = []
    nested = "fedmarket" in data
    if nested:
        lines.append("[fedmarket]")
    for key, value in table.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, str):
            lines.append(f"{key} = {json.dumps(value)}")
        else:
            raise ConfigError(f"{path}: cannot rewrite the non-scalar setting {key!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


# -- accounts -------------------------------------------------------------------------------
account_app = typer.Typer(
    help="Keys in encrypted keystore files under <home>/keystore (never printed). The password "
    "comes from a prompt or FEDMARKET_PASSWORD.",
    no_args_is_help=True,
)


@account_app.command("new")
@guarded
def account_new(
    name: Annotated[str, typer.Argument(help="a local name for the key, e.g. owner")],
    config: ConfigOpt = None,
) -> None:
    """Generate a key and store it encrypted; prints its name and address."""
    ctx = Ctx(config)
    entry = ctx.keystore().new(name, password(f"password for new account {name}", confirm=True))
    out.print(f"{entry.name} {entry.address} ({entry.path})")


@account_app.command("import")
@guarded
def account_import(
    name: Annotated[str, typer.Argument(help="a local name for the key")],
    config: ConfigOpt = None,
) -> None:
    """Store an existing private key (read from a hidden prompt or FEDMARKET_PRIVATE_KEY)."""
    ctx = Ctx(config)
    key = os.environ.get("FEDMARKET_PRIVATE_KEY") or typer.prompt(
        "private key (hex)", hide_input=True
    )
    entry = ctx.keystore().import_key(
        name, key, password(f"password for account {name}", confirm=True)
    )
    out.print(f"{entry.name} {entry.address} ({entry.path})")


@account_app.command("list")
@guarded
def account_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List keystore accounts (name and address)."""
    entries = Ctx(config).keystore().list()
    if as_json:
        _emit(json.dumps([{"name": e.name, "address": e.address} for e in entries]))
        return
    if not entries:
        out.print("no accounts yet: `fedmarket account new NAME`")
    for e in entries:
        out.print(f"{e.name:<20} {e.address}")


@account_app.command("fund")
@guarded
def account_fund(
    who: Annotated[str, typer.Argument(help="account name or address to fund")],
    amount: Annotated[str, typer.Option("--eth", help="how much ETH to send")] = "10",
    source: Annotated[int, typer.Option("--from-dev", help="dev account that pays")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Dev chains only: send ETH from a well-known dev account to an account."""
    from web3 import Web3

    ctx = Ctx(config, dev_account=source)
    address = who if Web3.is_address(who) else ctx.keystore().find(who).address
    sender = ctx.signer(None, source)
    ctx.chain.send_value(sender, Web3.to_checksum_address(address), to_wei(amount, "--eth"))
    out.print(f"{address} now holds {eth(ctx.chain.balance(address))}")


# -- deploy ---------------------------------------------------------------------------------
@guarded
def deploy_cmd(
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    alpha_ppm: Annotated[
        int, typer.Option(help="reliability EMA weight of the newest job, parts per million")
    ] = 300_000,
) -> None:
    """Deploy FedMarket and record its address (market_address) in the settings TOML."""
    from backend.chain.market import MarketClient

    ctx = Ctx(config, dev_account)
    sender = ctx.signer(account, dev_account)
    market, result = MarketClient.deploy(ctx.chain, sender, alpha_ppm)
    path = config or ctx.settings.config_path
    _write_config(path, {"market_address": market.address})
    out.print(f"FedMarket deployed at {market.address} (gas {result.gas_used:,}); saved to {path}")


# -- owner ----------------------------------------------------------------------------------
owner_app = typer.Typer(
    help="The job owner: post a job with an escrowed reward, follow it, settle it.",
    no_args_is_help=True,
)


_UINT32 = 2**32 - 1  # durations are uint32 seconds on chain


class JobFile(BaseModel):
    """job.toml: the market parameters (top level) and the job spec (model, training, ...)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "fedmarket job"
    dataset: str = "custom"
    model: dict[str, Any]
    training: dict[str, Any] = Field(default_factory=dict)
    aggregation: dict[str, Any] = Field(default_factory=dict)
    outlier_rule: str | None = None
    codec: Literal["fp32", "int8", "topk"] = "fp32"
    topk_fraction: float | None = None  # None: the JobSpec default
    min_rows: int = 10
    rounds: int = Field(ge=1, le=1000)  # the contract's MAX_ROUNDS
    reward_eth: str | float
    stake_eth: str | float
    min_trainers: int = Field(ge=1, le=256)  # the contract's MAX_TRAINERS
    max_trainers: int | None = Field(None, ge=1, le=256)
    min_reliability: float = Field(0.0, ge=0, le=1)
    aggregator: str
    validation_file: str | None = None
    join_duration: int = Field(7 * 24 * 3600, gt=0, le=_UINT32)
    commit_duration: int = Field(24 * 3600, gt=0, le=_UINT32)
    reveal_duration: int = Field(12 * 3600, gt=0, le=_UINT32)
    post_duration: int = Field(24 * 3600, gt=0, le=_UINT32)
    slash_bps: int = Field(5_000, ge=0, le=10_000)

    def job_spec(self) -> Any:
        from backend.core.jobspec import JobSpec

        aggregation = dict(self.aggregation)
        if self.outlier_rule:
            aggregation["rule"] = {**aggregation.get("rule", {}), "name": self.outlier_rule}
        return JobSpec.model_validate(
            {
                "name": self.name,
                "dataset": self.dataset,
                "model": self.model,
                "training": self.training,
                "aggregation": aggregation,
                "codec": self.codec,
                "min_rows": self.min_rows,
            }
            | ({} if self.topk_fraction is None else {"topk_fraction": self.topk_fraction})
        )


def load_job_file(path: Path) -> tuple[JobFile, Any]:
    """job.toml → (market terms, JobSpec); any typo or bad value is one line naming the key."""
    from pydantic import ValidationError

    from backend.core.jobspec import JobSpec, explain_validation_error

    if not path.is_file():
        what = "is a directory, not a job.toml" if path.is_dir() else "does not exist"
        raise ConfigError(f"job spec {path} {what}")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        jf = JobFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain_validation_error(exc, JobFile, str(path))) from None
    try:
        return jf, jf.job_spec()
    except ValidationError as exc:
        raise ConfigError(explain_validation_error(exc, JobSpec, str(path))) from None


def _predict_cid(store: Any, blob: bytes) -> str:
    """The cid `store.put(blob)` will return, without publishing the blob."""
    from backend.storage.stores import LocalStore, raw_cid

    if isinstance(store, LocalStore):
        return raw_cid(blob)

    def op(client: Any) -> str:
        return str(
            client.add_bytes(blob, opts={"cid-version": 1, "raw-leaves": True, "only-hash": True})
        )

    return str(store._retrying("add --only-hash", op))


def _owner_dir(ctx: Ctx, market: Any, job_id: int) -> Path:
    return ctx.home / "owner" / market.address.lower() / f"job-{job_id}"


@owner_app.command("create-job")
@guarded
def owner_create_job(
    spec: Annotated[Path, typer.Option("--spec", help="job.toml (see docs: market + model)")],
    validation: Annotated[
        Path | None,
        typer.Option(help="validation data (.npz x,y or .csv); overrides validation_file"),
    ] = None,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Post a job: upload the spec and initial weights, commit the validation split's hash,
    escrow the reward. The validation file stays local until `owner reveal-validation`."""
    from web3 import Web3

    from backend.chain.market import JobParams, validation_commitment
    from backend.core import codec
    from backend.core.datasets import load_fitting_file, to_npz_bytes
    from backend.core.models import build_model, get_weights
    from backend.storage.stores import sha256_bytes

    jf, job_spec = load_job_file(spec)
    val_path = validation or (
        (spec.parent / jf.validation_file).resolve() if jf.validation_file else None
    )
    if val_path is None:
        raise ConfigError("no validation data: set validation_file in job.toml or --validation")
    model = job_spec.model
    val = load_fitting_file(val_path, model.input_dim, model.num_classes, 1)
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    owner = ctx.signer(account, dev_account)
    if Web3.is_address(jf.aggregator):
        aggregator = Web3.to_checksum_address(jf.aggregator)
    else:
        aggregator = ctx.keystore().find(jf.aggregator).address
    val_blob = to_npz_bytes(val)
    val_hash, val_cid = sha256_bytes(val_blob), _predict_cid(ctx.store, val_blob)
    spec_blob = job_spec.to_bytes()
    initial_blob = codec.encode(get_weights(build_model(job_spec.model)))
    spec_cid, model_cid = (_predict_cid(ctx.store, b) for b in (spec_blob, initial_blob))
    params = JobParams(
        aggregator=aggregator,
        stake_required=to_wei(jf.stake_eth, "stake_eth", max_wei=2**96 - 1),  # uint96
        rounds=jf.rounds,
        min_trainers=jf.min_trainers,
        max_trainers=jf.max_trainers or jf.min_trainers,
        spec_hash=sha256_bytes(spec_blob),
        spec_cid=spec_cid,
        initial_model_hash=sha256_bytes(initial_blob),
        initial_model_cid=model_cid,
        validation_commitment=validation_commitment(val_hash, val_cid),
        join_duration=jf.join_duration,
        commit_duration=jf.commit_duration,
        reveal_duration=jf.reveal_duration,
        post_duration=jf.post_duration,
        min_reliability_ppm=round(jf.min_reliability * 1_000_000),
        slash_bps=jf.slash_bps,
    )
    reward = to_wei(jf.reward_eth, "reward_eth")
    # Everything that can fail on chain fails here, before anything is published.
    market.check_create_job(owner, params, reward)
    with stage_progress() as bars:
        published = (
            ctx.store.put(spec_blob),
            ctx.store.put(initial_blob, functools.partial(bars, "upload")),
        )
    if published != (spec_cid, model_cid):
        raise ConfigError(f"the store returned CIDs {published}, not {(spec_cid, model_cid)}")
    job_id, result = market.create_job(owner, params, reward)
    job_dir = _owner_dir(ctx, market, job_id)
    job_dir.mkdir(parents=True, exist_ok=True)
    kept = job_dir / "validation.npz"
    kept.write_bytes(val_blob)
    (job_dir / "validation.json").write_text(
        json.dumps({"sha256": val_hash.hex(), "cid": val_cid}, indent=1)
    )
    if as_json:
        _emit(json.dumps({"job_id": job_id, "validation": str(kept), "spec_cid": spec_cid}))
        return
    out.print(f"job {job_id} created (gas {result.gas_used:,}); spec {spec_cid}")
    out.print(
        f"validation split kept privately at {kept} — give it to the aggregator "
        f"{aggregator} (e.g. `fedmarket aggregator serve --validation {job_id}={kept}`); "
        "it is published only by `fedmarket owner reveal-validation`"
    )


def _status_dict(market: Any, job: Any) -> dict[str, Any]:
    posts = market.round_posts(job.job_id)
    parts = []
    for addr in market.participants(job.job_id):
        p = market.participant(job.job_id, addr)
        parts.append(
            {
                "trainer": addr,
                "score_total": int(p["totalScore"]) / 1_000_000,
                "flagged_rounds": int(p["flaggedRounds"]),
                "claimed": bool(p["claimed"]),
            }
        )
    return {
        "job_id": job.job_id,
        "status": job.status_enum.name.lower(),
        "phase": market.phase_of(job.job_id).name.lower(),
        "round": int(job.currentRound),
        "rounds": int(job.rounds),
        "rounds_posted": len(posts),
        "owner": job.owner,
        "aggregator": job.aggregator,
        "reward_wei": int(job.reward),
        "stake_required_wei": int(job.stakeRequired),
        "trainers": f"{int(job.participantCount)} (min {int(job.minTrainers)}, "
        f"max {int(job.maxTrainers)})",
        "participants": parts,
        "validation_revealed": bool(job.validationRevealed),
    }


@owner_app.command("status")
@guarded
def owner_status(job_id: JobArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """A job's status, phase, rounds and participants."""
    ctx = Ctx(config)
    market = ctx.market()
    info = _status_dict(market, ctx.job(market, job_id))
    if as_json:
        _emit(json.dumps(info))
        return
    for key, value in info.items():
        if key == "participants":
            for p in value:
                out.print(
                    f"  {p['trainer']}  score {p['score_total']:.4f}  flagged "
                    f"{p['flagged_rounds']}  claimed {p['claimed']}"
                )
        else:
            out.print(f"{_field(key, value, 20)}")


def _owner_tx(name: str, doc: str) -> None:
    def command(
        job_id: JobArg,
        config: ConfigOpt = None,
        account: AccountOpt = None,
        dev_account: DevAccountOpt = None,
    ) -> None:
        ctx = Ctx(config, dev_account)
        market = ctx.market()
        ctx.job(market, job_id)
        sender = ctx.signer(account, dev_account)
        method = {"start": market.start, "finalize": market.finalize, "refund": market.claim_refund}
        result = method[name](sender, job_id)
        out.print(f"job {job_id}: {name} done (gas {result.gas_used:,})")

    command.__doc__ = doc
    owner_app.command(name)(guarded(command))


_owner_tx("start", "Start a job that has its minimum number of trainers.")
_owner_tx("finalize", "Settle a job after its last round: rewards become claimable.")
_owner_tx("refund", "Take back what the rewards did not use (after finalization).")


@owner_app.command("reveal-validation")
@guarded
def owner_reveal_validation(
    job_id: JobArg,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Publish the validation split (upload it) and reveal it on chain, so anyone can audit."""
    from backend.chain.market import validation_commitment
    from backend.storage.stores import sha256_bytes

    ctx = Ctx(config, dev_account)
    market = ctx.market()
    job = ctx.job(market, job_id)
    kept = _owner_dir(ctx, market, job_id) / "validation.npz"
    if not kept.exists():
        raise ConfigError(f"the validation split of job {job_id} is not kept here ({kept})")
    blob = kept.read_bytes()
    content_hash = sha256_bytes(blob)
    expected_cid = _predict_cid(ctx.store, blob)
    if validation_commitment(content_hash, expected_cid) != bytes(job.validationCommitment):
        raise ConfigError(f"{kept} does not match job {job_id}'s validation commitment")
    sender = ctx.signer(account, dev_account)
    cid = ctx.store.put(blob)
    result = market.reveal_validation(sender, job_id, content_hash, cid)
    out.print(f"job {job_id}: validation split published as {cid} (gas {result.gas_used:,})")


@owner_app.command("download")
@guarded
def owner_download(
    job_id: JobArg,
    out_path: Annotated[Path, typer.Option("--out", help="where to write the .safetensors")],
    config: ConfigOpt = None,
) -> None:
    """Download the job's current (or final) model, checked against its on-chain sha256."""
    from backend.storage.stores import fetch_verified

    out_path = writable_file(out_path, "--out")
    ctx = Ctx(config)
    market = ctx.market()
    job = ctx.job(market, job_id)
    model_hash, cid = market.current_model(job_id)
    chain_hash = bytes(job.modelHash)
    if any(chain_hash) and chain_hash != model_hash:
        raise ConfigError(f"job {job_id}: the posted model does not match getJob's modelHash")
    with stage_progress() as bars:
        blob = fetch_verified(ctx.store, cid, model_hash, functools.partial(bars, "download"))
    atomic_write(out_path, blob)
    out.print(
        f"wrote {out_path} ({len(blob):,} bytes, sha256 {model_hash.hex()}, round "
        f"{len(market.round_posts(job_id))} of {int(job.rounds)})"
    )


# -- trainer --------------------------------------------------------------------------------
trainer_app = typer.Typer(
    help="The trainer: stake, join jobs, train on private data, commit and reveal updates, "
    "claim rewards. Data files: .npz (arrays x, y) or .csv (last column the label).",
    no_args_is_help=True,
)


def _state_file(ctx: Ctx, market: Any, address: str) -> Path:
    return ctx.home / "trainer" / market.address.lower() / f"{address.lower()}.json"


@trainer_app.command("register")
@guarded
def trainer_register(
    stake: Annotated[str, typer.Option("--stake", help="ETH to put in the stake vault")],
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Register as a trainer with a stake (or add stake if already registered)."""
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    sender = ctx.signer(account, dev_account)
    wei = to_wei(stake, "--stake")
    if market.account_of(sender.address)["registered"]:
        market.deposit(sender, wei)
    else:
        market.register(sender, wei)
    acct = market.account_of(sender.address)
    out.print(f"{sender.address}: stake {eth(acct['balance'])} ({eth(acct['locked'])} locked)")


def _load_fitting(client_data: Path, spec: Any) -> Any:
    from backend.core.datasets import load_fitting_file

    m = spec.model
    return load_fitting_file(client_data, m.input_dim, m.num_classes, spec.min_rows)


def _job_spec(ctx: Ctx, market: Any, job_id: int) -> Any:
    from backend.protocol.fetch import fetch_job_spec

    return fetch_job_spec(market, ctx.store, job_id)


@trainer_app.command("join")
@guarded
def trainer_join(
    job_id: JobArg,
    data: Annotated[
        Path | None, typer.Option(help="check that this data file fits the job before staking")
    ] = None,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Join a job: locks the job's stake from your vault balance."""
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    ctx.job(market, job_id)
    if data is not None:
        _load_fitting(data, _job_spec(ctx, market, job_id))
    sender = ctx.signer(account, dev_account)
    result = market.join(sender, job_id)
    out.print(f"{sender.address} joined job {job_id} (gas {result.gas_used:,})")


@trainer_app.command("run")
@guarded
def trainer_run(
    job_id: JobArg,
    data: Annotated[Path, typer.Option(help="your private data: .npz (x, y) or .csv")],
    once: Annotated[bool, typer.Option(help="do one round (commit and reveal), then exit")] = False,
    poll: Annotated[float, typer.Option(help="seconds between chain polls")] = 5.0,
    timeout: Annotated[
        float | None, typer.Option(help="give up (exit 1) after this many seconds of waiting")
    ] = None,
    step_only: Annotated[
        bool, typer.Option("--step", help="do at most one action now (no waiting), then exit")
    ] = False,
    seed: Annotated[int, typer.Option(help="seed of local training")] = 0,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Train and submit every round: commit in the commit phase, reveal in the reveal phase.
    Safe to restart: a pending commitment is revealed, never replaced."""
    from trainer_client import runner
    from trainer_client.client import TrainerClient

    ctx = Ctx(config, dev_account)
    market = ctx.market()
    ctx.job(market, job_id)
    dataset = _load_fitting(data, _job_spec(ctx, market, job_id))
    sender = ctx.signer(account, dev_account)

    def report(s: runner.Step) -> None:
        err.print(f"job {job_id} round {s.round}: {s.action} {s.detail}".rstrip(), soft_wrap=True)

    with stage_progress() as bars:
        client = TrainerClient(
            market,
            ctx.store,
            sender,
            dataset,
            seed=seed,
            state_file=_state_file(ctx, market, sender.address),
            progress=bars,
        )
        if step_only:
            s = runner.step(client, job_id)
            report(s)
            _emit(json.dumps({"action": s.action, "round": s.round}))
            return
        done = runner.run(client, job_id, once=once, poll_s=poll, timeout_s=timeout, report=report)
    _emit(json.dumps({"actions": [[s.action, s.round] for s in done]}))


@trainer_app.command("status")
@guarded
def trainer_status(
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    address: Annotated[
        str | None, typer.Option(help="look at this address (no key needed)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stake balance, locked stake, reliability, and the jobs this trainer is in."""
    from web3 import Web3

    ctx = Ctx(config, dev_account)
    market = ctx.market()
    if address:
        addr = Web3.to_checksum_address(address)
    elif dev_account is not None:
        addr = ctx.signer(None, dev_account).address
    else:
        ks = ctx.keystore()
        entries = ks.list()
        if not account and len(entries) != 1:
            raise ConfigError("say whose status: --account NAME, --dev-account N or --address")
        addr = ks.find(account or entries[0].name).address
    acct = market.account_of(addr)
    ppm, jobs_done = market.reliability_of(addr)
    jobs = []
    for job_id in range(1, market.next_job_id()):
        p = market.participant(job_id, addr)
        if not p["joined"]:
            continue
        job = market.job(job_id)
        try:
            reward = market.reward_of(job_id, addr)
        except FedMarketError:
            reward = None
        jobs.append(
            {
                "job_id": job_id,
                "status": job.status_enum.name.lower(),
                "round": int(job.currentRound),
                "score_total": int(p["totalScore"]) / 1_000_000,
                "claimed": bool(p["claimed"]),
                "reward_wei": reward,
            }
        )
    info = {
        "address": addr,
        "wallet_wei": ctx.chain.balance(addr),
        "stake_wei": acct["balance"],
        "locked_wei": acct["locked"],
        "registered": acct["registered"],
        "reliability": ppm / 1_000_000,
        "jobs_rated": jobs_done,
        "jobs": jobs,
    }
    if as_json:
        _emit(json.dumps(info))
        return
    for key, value in info.items():
        if key != "jobs":
            out.print(f"{_field(key, value, 20)}")
    for j in jobs:
        out.print(
            f"  job {j['job_id']}: {j['status']} round {j['round']} score "
            f"{j['score_total']:.4f} claimed {j['claimed']}"
        )


@trainer_app.command("claim")
@guarded
def trainer_claim(
    job_id: JobArg,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Claim your reward from a finalized job (and unlock what is left of your stake)."""
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    ctx.job(market, job_id)
    sender = ctx.signer(account, dev_account)
    before = market.account_of(sender.address)["balance"]
    wallet = ctx.chain.balance(sender.address)
    result = market.claim(sender, job_id)
    paid = [e for e in market.claims(job_id) if e["trainer"] == sender.address]
    reward = int(paid[-1]["reward"]) if paid else 0
    if as_json:
        _emit(json.dumps({"job_id": job_id, "reward_wei": reward, "gas": result.gas_used}))
        return
    out.print(
        f"job {job_id}: claimed {eth(reward)} (gas {result.gas_used:,}); stake "
        f"{eth(market.account_of(sender.address)['balance'])} (was {eth(before)}), "
        f"wallet was {eth(wallet)}"
    )


@trainer_app.command("withdraw")
@guarded
def trainer_withdraw(
    amount: Annotated[
        str | None, typer.Argument(help="ETH to withdraw (default: all free stake)")
    ] = None,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    dev_account: DevAccountOpt = None,
) -> None:
    """Withdraw free (unlocked) stake to your wallet."""
    ctx = Ctx(config, dev_account)
    market = ctx.market()
    sender = ctx.signer(account, dev_account)
    acct = market.account_of(sender.address)
    free = acct["balance"] - acct["locked"]
    wei = free if amount is None else to_wei(amount, "AMOUNT")
    if wei <= 0:
        raise ConfigError(f"no free stake to withdraw ({eth(acct['locked'])} is locked)")
    if wei > free:
        raise ConfigError(f"only {eth(free)} is free to withdraw ({eth(acct['locked'])} locked)")
    market.withdraw(sender, wei)
    out.print(f"withdrew {eth(wei)}; stake now {eth(market.account_of(sender.address)['balance'])}")
