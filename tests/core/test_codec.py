from __future__ import annotations

import numpy as np
import pytest

from backend.core import codec
from backend.core.codec import Template
from backend.core.errors import Reason, UpdateRejected
from backend.core.models import ModelSpec, build_model, get_weights, template_of


@pytest.fixture
def weights() -> dict[str, np.ndarray]:
    return get_weights(build_model(ModelSpec(hidden=[8])))


def test_round_trip_is_exact_and_deterministic(weights) -> None:
    blob = codec.encode(weights)
    assert blob == codec.encode(weights)
    back = codec.decode(blob, Template.of(weights))
    for k in weights:
        assert np.array_equal(back[k], weights[k])


def test_flatten_unflatten(weights) -> None:
    t = Template.of(weights)
    v = t.flatten(weights)
    assert v.shape == (t.size,) and v.dtype == np.float64
    back = t.unflatten(v)
    assert all(np.array_equal(back[k], weights[k]) for k in weights)


@pytest.mark.parametrize(
    ("mutate", "reason", "words"),
    [
        (lambda w: b"this is not safetensors", Reason.UNDECODABLE, "not a valid safetensors"),
        (lambda w: b"\xff" * 8 + b"{}", Reason.UNDECODABLE, "not a valid safetensors"),
        (
            lambda w: codec.encode({**w, "extra": np.zeros(3, np.float32)}),
            Reason.WRONG_SHAPE,
            "unexpected tensors",
        ),
        (
            lambda w: codec.encode({k: v for k, v in list(w.items())[1:]}),
            Reason.WRONG_SHAPE,
            "missing tensors",
        ),
        (
            lambda w: codec.encode(
                {k: (v[:1] if i == 0 else v) for i, (k, v) in enumerate(w.items())}
            ),
            Reason.WRONG_SHAPE,
            "has shape",
        ),
        (
            lambda w: codec.encode(
                {
                    k: (np.full_like(v, np.nan) if i == 0 else v)
                    for i, (k, v) in enumerate(w.items())
                }
            ),
            Reason.NON_FINITE,
            "NaN/Inf",
        ),
        (
            lambda w: codec.encode(
                {
                    k: (np.full_like(v, np.inf) if i == 1 else v)
                    for i, (k, v) in enumerate(w.items())
                }
            ),
            Reason.NON_FINITE,
            "NaN/Inf",
        ),
    ],
)
def test_bad_updates_are_rejected_with_reason(weights, mutate, reason, words) -> None:
    with pytest.raises(UpdateRejected, match=words) as info:
        codec.decode(mutate(weights), Template.of(weights))
    assert info.value.reason == reason


def test_wrong_dtype_rejected(weights) -> None:
    from safetensors.numpy import save

    blob = save({k: v.astype(np.float64) for k, v in weights.items()})
    with pytest.raises(UpdateRejected, match="expected float32") as info:
        codec.decode(blob, Template.of(weights))
    assert info.value.reason == Reason.WRONG_SHAPE


def test_size_limit(weights) -> None:
    blob = codec.encode(weights)
    with pytest.raises(UpdateRejected) as info:
        codec.decode(blob, Template.of(weights), max_bytes=len(blob) - 1)
    assert info.value.reason == Reason.TOO_LARGE


def test_templates_of_every_family() -> None:
    assert template_of(ModelSpec(family="logreg", input_dim=64)).size == 64 * 10 + 10
    assert (
        template_of(ModelSpec(family="mlp", input_dim=64, hidden=[64])).size == 64 * 64 + 64 + 650
    )
    assert template_of(ModelSpec(family="cnn", input_dim=784)).size > 0
    with pytest.raises(ValueError, match="28x28"):
        ModelSpec(family="cnn", input_dim=64)
