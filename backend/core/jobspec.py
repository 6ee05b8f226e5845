"""A job's spec: everything every party must agree on, stored as JSON on the content store.

Its sha256 is recorded on chain at job creation, so trainers, the aggregator and auditors all
read the same model, training hints and aggregation rules.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backend.core.compression import DEFAULT_TOPK_FRACTION
from backend.core.models import ModelSpec


class TrainingSpec(BaseModel):
    """Hints for trainers' local training (a trainer may train differently; it is scored anyway)."""

    model_config = ConfigDict(extra="forbid")

    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)


class PrivacySpec(BaseModel):
    """DP-SGD the job asks of its trainers (`backend.core.privacy`): per-sample gradients
    clipped to `clip_norm`, Gaussian noise of `noise_multiplier` x `clip_norm`, or the noise that
    keeps the whole job (every round) within (`target_epsilon`, `delta`)."""

    model_config = ConfigDict(extra="forbid")

    clip_norm: float = Field(1.0, gt=0, le=1e6, description="max L2 norm of a per-sample gradient")
    # Floors: below σ 0.3 the accounted ε runs into the thousands (no privacy to speak of),
    # and below ε 0.1 the noise search has no answer for many shards; an owner's spec must not
    # leave honest DP trainers unable to train.
    noise_multiplier: float | None = Field(None, ge=0.3, le=1e6)
    target_epsilon: float | None = Field(
        None, ge=0.1, le=1e6, description="the budget for the whole job, across all its rounds"
    )
    delta: float = Field(1e-5, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_noise_setting(self) -> PrivacySpec:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("[privacy] needs exactly one of noise_multiplier and target_epsilon")
        return self


class RuleSpec(BaseModel):
    """The robust rule that flags outliers (see aggregator.rules.screening.OutlierRule)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal[
        "multi_krum", "median", "trimmed_mean", "norm_bound", "cosine", "cosine_norm", "consensus"
    ] = "consensus"
    num_malicious: int = Field(1, ge=0)
    to_keep: int = Field(0, ge=0)
    beta: float = Field(0.1, ge=0, lt=0.5)
    max_norm_ratio: float = Field(3.0, gt=1)
    min_cosine: float = Field(0.1, ge=-1, le=1)
    median_dist_ratio: float = Field(3.0, gt=1)
    min_pair_cosine: float = Field(0.0, ge=-1, le=1)
    noise_sigmas: float = Field(6.0, ge=0)
    ref_cos_ratio: float = Field(
        0.35,
        ge=0,
        lt=1,
        description="flag an update whose cosine to the aggregator's reference "
        "direction (one local training pass on the validation split) is below this fraction of "
        "the median update's cosine (0 disables the test)",
    )
    harm_ratio: float = Field(
        2.0,
        ge=0,
        description="flag an update whose validation-loss harm exceeds this many "
        "times the median accepted gain (0 disables the test)",
    )


class AggregationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: RuleSpec = Field(default_factory=RuleSpec)
    outer: Literal["sgd", "nesterov"] = "sgd"
    server_lr: float = Field(1.0, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    scoring: Literal["information", "loss_gain", "loo", "shapley"] = Field(
        "information",
        description="information: the validation gain of the part of an update that public "
        "vectors do not explain, beyond chance (aggregator.rules.information); loss_gain: the "
        "whole update's gain alone; loo / shapley: marginal values over the round",
    )
    info_sigmas: float = Field(
        2.0,
        ge=0,
        description="information scoring pays only the gain above this many standard "
        "deviations of what the same magnitudes with random signs would gain by chance",
    )
    max_colluding_fraction: float = Field(
        0.3,
        ge=0,
        lt=0.5,
        description="the share of a round's updates the statistics must withstand being "
        "crafted (copy bar, harm bar)",
    )
    shapley_permutations: int = Field(32, ge=1)
    seed: int = 0
    copy_rel_tol: float = Field(1e-3, ge=0)
    copy_scale_cos: float = Field(0.9999, gt=0, le=1)
    zero_ratio: float = Field(1e-3, ge=0)
    max_update_bytes: int = Field(64 * 1024 * 1024, gt=0)


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo must not silently become a default

    version: Literal[1] = 1
    name: str = "fedmarket job"
    dataset: str = Field("digits", description="what data the job is about (a hint for trainers)")
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    aggregation: AggregationSpec = Field(default_factory=AggregationSpec)
    codec: Literal["fp32", "int8", "topk"] = "fp32"
    topk_fraction: float = Field(
        DEFAULT_TOPK_FRACTION,
        gt=0,
        le=1,
        description="top-k codec: the fraction of entries a trainer sends (the default makes "
        "a small model's update 25x smaller than fp32)",
    )
    min_rows: int = Field(10, ge=1)
    privacy: PrivacySpec | None = Field(
        None, description="DP-SGD asked of trainers (None: no differential privacy)"
    )

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): the bytes whose sha256 goes on chain.

        `privacy` is left out when None, so a job without it has the bytes (and the on-chain
        hash) it had before the field existed."""
        data = self.model_dump(mode="json")
        if data.get("privacy") is None:
            data.pop("privacy", None)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> JobSpec:
        data: dict[str, Any] = json.loads(blob)
        return cls.model_validate(data)


def explain_validation_error(exc: ValidationError, root: type[BaseModel], source: str) -> str:
    """One line for the first problem, naming the table and, for an unknown key, the keys
    that are allowed there (pydantic says only "Extra inputs are not permitted")."""
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    if first["type"] == "value_error" and not loc:  # a rule across fields: its own sentence
        return f"{source}: {first['msg'].removeprefix('Value error, ')}"
    if first["type"] != "extra_forbidden":
        return f"{source}: {'.'.join(loc) or 'spec'}: {first['msg']}"
    model = _model_at(root, loc[:-1])
    table = f"[{'.'.join(loc[:-1])}]" if len(loc) > 1 else "the top level"
    allowed = ", ".join(model.model_fields) if model else "see the docs"
    return f"{source}: unknown key {loc[-1]!r} in {table}; allowed there: {allowed}"


def _model_at(root: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The pydantic model that validates the table at `path` under `root` (None if unknown)."""
    model: type[BaseModel] | None = root
    for part in path:
        field = model.model_fields.get(part) if model else None
        hints = typing.get_args(field.annotation) or (field.annotation,) if field else ()
        models = [h for h in hints if isinstance(h, type) and issubclass(h, BaseModel)]
        model = models[0] if models else None  # an optional table: `Spec | None`
    return model
