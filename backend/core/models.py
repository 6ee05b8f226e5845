"""Models by spec, never by pickle: a JSON-able spec builds a torch module; weights are safetensors.

Families: `logreg` (linear softmax), `mlp` (hidden layers with ReLU), `cnn` (a small CNN for
28×28 single-channel images), `charlm` (a small decoder-only transformer over bytes,
`backend.core.charlm`: `input_dim` is its context length, `num_classes` its 256 byte values).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from torch import nn

from backend.core.charlm import VOCAB, CharLM, next_byte_targets, tokens_of
from backend.core.codec import Template, Tensors

#: charlm's shape when the spec leaves it out: what `fedmarket demo --model charlm` trains.
CHARLM_DEFAULTS = {"width": 64, "depth": 2, "heads": 4}
# charlm's bounds. Every party (trainers, the aggregator, each verifier) must be able to run a
# job's model, and an owner could otherwise publish a spec no round can be computed for: the
# aggregator would miss the post deadline and lose its bond. Attention holds heads × context²
# scores per block and row, so that is what is bounded, with the shape's own limits.
MAX_CONTEXT = 1024  # bytes per row
MAX_WIDTH = 1024
MAX_DEPTH = 12
MIN_HEAD_WIDTH = 8
MAX_ATTENTION_CELLS = 2**23  # heads × context² × depth per row (64 MiB of float64 scores)


class ModelSpec(BaseModel):
    """What model a job trains. Recorded in the job spec; every role builds the same module."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["logreg", "mlp", "cnn", "charlm"] = "mlp"
    input_dim: int = Field(64, gt=0)
    num_classes: int = Field(10, ge=2)
    hidden: list[int] = Field(default_factory=lambda: [64])
    seed: int = 0
    # charlm only (None elsewhere, and then left out of the JSON, so that the canonical bytes,
    # hence the on-chain hash, of every other family's spec are what they were before charlm)
    width: int | None = Field(None, description="charlm: embedding width")
    depth: int | None = Field(None, description="charlm: transformer blocks")
    heads: int | None = Field(None, description="charlm: attention heads (must divide width)")

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.family == "cnn" and self.input_dim != 28 * 28:
            raise ValueError("the cnn family takes 28x28 images: input_dim must be 784")
        if any(h <= 0 for h in self.hidden):
            raise ValueError("hidden layer sizes must be positive")
        if self.family == "charlm":
            self._check_charlm()
        elif any(getattr(self, k) is not None for k in CHARLM_DEFAULTS):
            raise ValueError("width, depth and heads are settings of the charlm family only")
        return self

    def _check_charlm(self) -> None:
        for name, default in CHARLM_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        if self.num_classes != VOCAB:
            raise ValueError(f"the charlm family predicts bytes: num_classes must be {VOCAB}")
        if min(self.width or 0, self.depth or 0, self.heads or 0) <= 0:
            raise ValueError("charlm's width, depth and heads must be positive")
        if (self.width or 0) % (self.heads or 1):
            raise ValueError(
                f"charlm's width ({self.width}) must be a multiple of its heads ({self.heads})"
            )
        if self.input_dim > MAX_CONTEXT:
            raise ValueError(f"charlm's context (input_dim) must be at most {MAX_CONTEXT} bytes")
        if (self.width or 0) > MAX_WIDTH or (self.depth or 0) > MAX_DEPTH:
            raise ValueError(f"charlm's width must be at most {MAX_WIDTH}, depth {MAX_DEPTH}")
        if (self.width or 0) // (self.heads or 1) < MIN_HEAD_WIDTH:
            raise ValueError(f"charlm's width / heads must be at least {MIN_HEAD_WIDTH}")
        if self.attention_cells > MAX_ATTENTION_CELLS:
            raise ValueError(
                f"charlm's heads x context² x depth is {self.attention_cells:,} attention "
                f"scores per row; at most {MAX_ATTENTION_CELLS:,} (use a smaller context, fewer "
                "heads or fewer blocks)"
            )

    @property
    def attention_cells(self) -> int:
        """charlm: attention scores per row over all blocks (0 for other families)."""
        if self.family != "charlm":
            return 0
        return (self.heads or 0) * self.input_dim**2 * (self.depth or 0)

    @model_serializer(mode="wrap")
    def _without_unset_charlm_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in CHARLM_DEFAULTS:
                if data.get(name) is None:
                    data.pop(name, None)
        return data


class _SmallCNN(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def build_model(spec: ModelSpec, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A freshly initialised module (seeded by spec.seed, so every party gets the same one)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(spec.seed)
    try:
        if spec.family == "logreg":
            model: nn.Module = nn.Sequential(nn.Linear(spec.input_dim, spec.num_classes))
        elif spec.family == "mlp":
            layers: list[nn.Module] = []
            prev = spec.input_dim
            for width in spec.hidden:
                layers += [nn.Linear(prev, width), nn.ReLU()]
                prev = width
            layers.append(nn.Linear(prev, spec.num_classes))
            model = nn.Sequential(*layers)
        elif spec.family == "cnn":
            model = _SmallCNN(spec.num_classes)
        else:
            assert spec.width and spec.depth and spec.heads  # filled in by the validator
            model = CharLM(spec.input_dim, spec.width, spec.depth, spec.heads)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.to(dtype)


def check_inputs(spec: ModelSpec, x: np.ndarray) -> None:
    """What `check_fits` cannot see from shapes: charlm's features must be byte values
    (DataError otherwise), caught when a file is read rather than mid-round."""
    if spec.family == "charlm":
        tokens_of(torch.as_tensor(np.asarray(x)))


def get_weights(model: nn.Module) -> Tensors:
    return {
        k: v.detach().cpu().numpy().astype(np.float32, copy=True)
        for k, v in model.state_dict().items()
    }


def set_weights(model: nn.Module, tensors: Mapping[str, np.ndarray]) -> None:
    ref = model.state_dict()
    dtype = next(iter(ref.values())).dtype
    model.load_state_dict({k: torch.as_tensor(np.asarray(tensors[k])).to(dtype) for k in ref})


def template_of(spec: ModelSpec) -> Template:
    """Names and shapes of the spec's tensors (cached: building a module just to read them
    would otherwise happen on every fetch and every round)."""
    return _template_of_json(spec.model_dump_json())


@functools.lru_cache(maxsize=64)
def _template_of_json(spec_json: str) -> Template:
    return Template.of(get_weights(build_model(ModelSpec.model_validate_json(spec_json))))


def logits_and_targets(
    spec: ModelSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, classes), targets (N,)) of a batch: what every loss and accuracy in the
    codebase (training, scoring, evaluation) is computed from, so that a family defines once
    what its predictions are.

    charlm predicts the next byte at every position of a row: its N is rows x context, and the
    targets are each row's bytes shifted by one, then the row's y."""
    if spec.family == "charlm":
        logits = model(x)
        targets = next_byte_targets(tokens_of(x), y)
        return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    return model(x), y


def batch_loss(spec: ModelSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of a batch (per example; per token for a sequence family)."""
    logits, target = logits_and_targets(spec, model, x, y)
    return nn.functional.cross_entropy(logits, target)


#: Attention scores one evaluation chunk may hold (charlm): rows are evaluated in chunks of
#: this many cells, in a fixed order, so memory is bounded whatever the validation split's size.
EVAL_CHUNK_CELLS = 2**23


def row_chunks(spec: ModelSpec, rows: int) -> list[slice]:
    """The row ranges `evaluate` and `loss_gradient` work through: one for every family but
    charlm, whose chunks hold at most EVAL_CHUNK_CELLS attention scores (fixed by the spec, so
    every machine sums the same chunks in the same order)."""
    per = max(1, EVAL_CHUNK_CELLS // spec.attention_cells if spec.attention_cells else rows)
    return [slice(start, start + per) for start in range(0, max(rows, 1), per)]


_EVAL_MODULES = threading.local()


def _eval_module(spec: ModelSpec) -> nn.Module:
    """A float64 module for `spec`, built once per thread and reused (a round evaluates one
    spec once per update). `set_weights` overwrites every tensor of its state, so a reused
    module gives the numbers a fresh one would."""
    cache: dict[str, nn.Module] | None = getattr(_EVAL_MODULES, "cache", None)
    if cache is None:
        cache = _EVAL_MODULES.cache = {}
    key = spec.model_dump_json()
    model = cache.get(key)
    if model is None:
        if len(cache) >= 8:
            cache.clear()
        model = cache[key] = build_model(spec, dtype=torch.float64)
    return model


def evaluate(
    spec: ModelSpec, weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `weights` on (x, y), in float64 for reproducibility."""
    model = _eval_module(spec)
    set_weights(model, weights)
    model.eval()
    parts = []  # (mean loss, correct, targets) per chunk
    with torch.no_grad():
        for rows in row_chunks(spec, len(y)):
            logits, target = logits_and_targets(
                spec,
                model,
                torch.as_tensor(x[rows], dtype=torch.float64),
                torch.as_tensor(y[rows], dtype=torch.long),
            )
            parts.append(
                (
                    nn.functional.cross_entropy(logits, target).item(),
                    int((logits.argmax(1) == target).sum().item()),
                    int(target.numel()),
                )
            )
    total = sum(n for _, _, n in parts)
    if len(parts) == 1:  # the plain mean, bit for bit as before chunking (the goldens pin it)
        return float(parts[0][0]), parts[0][1] / total
    return float(sum(loss * n for loss, _, n in parts) / total), sum(c for _, c, _ in parts) / total


def loss_gradient(
    spec: ModelSpec, weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> Tensors:
    """Gradient of the mean cross-entropy on (x, y) at `weights`, per tensor, in float64."""
    model = build_model(spec, dtype=torch.float64)
    set_weights(model, weights)
    model.eval()
    params = dict(model.named_parameters())
    chunks = row_chunks(spec, len(y))
    grads: list[torch.Tensor] | None = None
    for rows in chunks:
        loss = batch_loss(
            spec,
            model,
            torch.as_tensor(x[rows], dtype=torch.float64),
            torch.as_tensor(y[rows], dtype=torch.long),
        )
        if len(chunks) > 1:  # the chunk's part of the whole mean (equal tokens per row)
            loss = loss * (len(y[rows]) / len(y))
        part = torch.autograd.grad(loss, list(params.values()))
        grads = list(part) if grads is None else [g + p for g, p in zip(grads, part, strict=True)]
    assert grads is not None
    by_name = {k: g.detach().numpy() for k, g in zip(params, grads, strict=True)}
    # Buffers (none today) have no gradient: zeros keep the template's layout.
    return {k: by_name.get(k, np.zeros(np.shape(v))) for k, v in weights.items()}


def spec_from_dict(data: Mapping[str, Any]) -> ModelSpec:
    return ModelSpec.model_validate(dict(data))
