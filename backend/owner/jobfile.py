"""job.toml: the owner's description of a job, read, checked and written.

Top-level keys are the market terms (reward, stake, rounds, trainers, deadlines, challenge
window, aggregator and its bond); the tables `[model]`, `[training]`, `[aggregation]` are the job
spec trainers download.

`challenge_window` (seconds each posted round stays open to challenges after its validation
chunk is revealed) defaults to the market's minimum: 0 on a dev chain, hours on a production
deployment. `aggregator_bond_eth` (the aggregator's stake the job locks) defaults to the reward.
"""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from backend.chain.market import JobParams
from backend.core.errors import ConfigError
from backend.core.jobspec import JobSpec, explain_validation_error
from backend.core.units import ETHER, PPM
from backend.owner.publish import JobArtifacts, job_params

UINT32_MAX = 2**32 - 1  # durations are uint32 seconds on chain
MAX_JOB_SECONDS = 365 * 86400  # the contract's MAX_JOB_DURATION (stake locked at most a year)
UINT96_MAX = 2**96 - 1  # the contract keeps stakes in uint96
UINT128_MAX = 2**128 - 1  # a reliability weight (decayed stake) is a uint128


def eth_to_wei(value: str | float | int, what: str, max_wei: int | None = None) -> int:
    """`value` ETH as a whole number of wei; `what` names the setting in error messages."""
    try:
        wei = Decimal(str(value)) * ETHER
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not a number of ETH") from None
    if wei < 0 or wei != wei.to_integral_value():
        raise ValueError(f"{what}: {value!r} ETH is not a whole number of wei >= 0")
    if max_wei is not None and wei > max_wei:
        raise ValueError(f"{what}: {value!r} ETH is above the most the contract holds")
    return int(wei)


class JobFile(BaseModel):
    """job.toml: the market parameters (top level) and the job spec (model, training, ...)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "fedmarket job"
    dataset: str = "custom"
    model: dict[str, Any]
    training: dict[str, Any] = Field(default_factory=dict)
    aggregation: dict[str, Any] = Field(default_factory=dict)
    privacy: dict[str, Any] | None = None  # DP-SGD asked of trainers (`[privacy]`)
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
    # The confidence a trainer's reliability must rest on: its decayed stake-weighted history.
    min_reliability_weight_eth: str | float = "0"
    aggregator: str
    validation_file: str | None = None
    join_duration: int = Field(7 * 24 * 3600, gt=0, le=UINT32_MAX)
    commit_duration: int = Field(24 * 3600, gt=0, le=UINT32_MAX)
    reveal_duration: int = Field(12 * 3600, gt=0, le=UINT32_MAX)
    post_duration: int = Field(24 * 3600, gt=0, le=UINT32_MAX)
    challenge_window: int | None = Field(None, ge=0, le=UINT32_MAX)  # None: the market's minimum
    slash_bps: int = Field(5_000, ge=0, le=10_000)
    aggregator_bond_eth: str | float | None = None  # None: the reward

    @field_validator("aggregator_bond_eth")
    @classmethod
    def _bond_is_positive_wei(cls, value: str | float | None) -> str | float | None:
        if value is None:
            return value
        try:
            wei = eth_to_wei(value, "", max_wei=UINT96_MAX)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix(": ")) from None
        if wei == 0:
            raise ValueError("must be above 0 ETH (leave it out for the default: the reward)")
        return value

    @field_validator("min_reliability_weight_eth")
    @classmethod
    def _weight_is_wei(cls, value: str | float) -> str | float:
        try:
            eth_to_wei(value, "", max_wei=UINT128_MAX)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix(": ")) from None
        return value

    @model_validator(mode="after")
    def _fits_the_contracts_time_limit(self) -> JobFile:
        window = self.challenge_window or 0
        span = self.join_duration + self.rounds * (
            self.commit_duration + self.reveal_duration + self.post_duration + window
        )
        if span > MAX_JOB_SECONDS:
            raise ValueError(
                f"the job could run {span / 86400:g} days (join_duration + rounds x (commit + "
                f"reveal + post durations + challenge_window)); the contract allows "
                f"{MAX_JOB_SECONDS // 86400}: shorten the durations or the rounds"
            )
        return self

    def job_spec(self) -> JobSpec:
        """The spec trainers download (`outlier_rule` is shorthand for aggregation.rule.name)."""
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
            | ({} if self.privacy is None else {"privacy": self.privacy})
        )

    def validation_path(self, job_file: Path, override: Path | None = None) -> Path:
        """The validation data: `override`, else `validation_file` relative to the job file."""
        if override is not None:
            return override
        if self.validation_file:
            return (job_file.parent / self.validation_file).resolve()
        raise ConfigError("no validation data: set validation_file in job.toml or --validation")

    def job_params(
        self, artifacts: JobArtifacts, aggregator: str, *, min_challenge_window: int = 0
    ) -> JobParams:
        """createJob's arguments: these terms plus the published artifacts' hashes, CIDs and
        validation root. `min_challenge_window`: the market's (the default window)."""
        window = self.challenge_window
        return job_params(
            artifacts,
            aggregator=aggregator,
            stake_required=eth_to_wei(self.stake_eth, "stake_eth", max_wei=UINT96_MAX),
            rounds=self.rounds,
            min_trainers=self.min_trainers,
            max_trainers=self.max_trainers or self.min_trainers,
            join_duration=self.join_duration,
            commit_duration=self.commit_duration,
            reveal_duration=self.reveal_duration,
            post_duration=self.post_duration,
            challenge_window=min_challenge_window if window is None else window,
            min_reliability_ppm=round(self.min_reliability * PPM),
            min_reliability_weight=eth_to_wei(
                self.min_reliability_weight_eth, "min_reliability_weight_eth", max_wei=UINT128_MAX
            ),
            slash_bps=self.slash_bps,
            aggregator_bond=self.aggregator_bond_wei(),
        )

    def aggregator_bond_wei(self) -> int:
        """The aggregator bond the job locks, in wei (0: the contract's default, the reward)."""
        if self.aggregator_bond_eth is None:
            return 0
        return eth_to_wei(self.aggregator_bond_eth, "aggregator_bond_eth", max_wei=UINT96_MAX)

    def reward_wei(self) -> int:
        """The reward to escrow, in wei."""
        return eth_to_wei(self.reward_eth, "reward_eth")


def load_job_file(path: Path) -> tuple[JobFile, JobSpec]:
    """job.toml → (market terms, JobSpec); any typo or bad value is one line naming the key."""
    if not path.is_file():
        what = "is a directory, not a job.toml" if path.is_dir() else "does not exist"
        raise ConfigError(f"job spec {path} {what}")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        job_file = JobFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain_validation_error(exc, JobFile, str(path))) from None
    try:
        return job_file, job_file.job_spec()
    except ValidationError as exc:
        raise ConfigError(explain_validation_error(exc, JobSpec, str(path))) from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # inf and nan are spelled the same in TOML
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are valid in TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to a job file")


def _toml_table(name: str, table: dict[str, Any]) -> list[str]:
    lines = [f"[{name}]"] if name else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += ["", *_toml_table(f"{name}.{key}" if name else key, value)]
    return lines


def job_file_toml(job_file: JobFile) -> str:
    """The text of a job.toml that `load_job_file` reads back as `job_file`."""
    return "\n".join(_toml_table("", job_file.model_dump(exclude_none=True))) + "\n"


def write_job_file(path: Path, job_file: JobFile) -> Path:
    """Write `job_file` as TOML at `path` (the template an owner edits); returns `path`."""
    path.write_text(job_file_toml(job_file))
    return path
