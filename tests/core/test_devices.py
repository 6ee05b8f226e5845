"""`--device`: the selection logic (run on the CPU with the accelerators' probes faked), and that
the round's result cannot depend on where a trainer trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.core.datasets import load_digits_dataset
from backend.core.devices import resolve_device
from backend.core.errors import ConfigError
from backend.core.jobspec import TrainingSpec
from backend.core.models import ModelSpec, build_model, get_weights
from backend.core.training import train_local


def _probes(cuda: bool, mps: bool) -> dict:
    return {"cuda_available": lambda: cuda, "mps_available": lambda: mps}


@pytest.mark.parametrize(
    ("cuda", "mps", "picked"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"), (True, False, "cuda")],
)
def test_auto_picks_cuda_then_mps_then_cpu(cuda: bool, mps: bool, picked: str) -> None:
    assert resolve_device("auto", **_probes(cuda, mps)).type == picked


def test_explicit_devices_resolve_when_present() -> None:
    assert resolve_device("cpu", **_probes(False, False)) == torch.device("cpu")
    assert resolve_device("CUDA", **_probes(True, False)) == torch.device("cuda")
    assert resolve_device("mps", **_probes(False, True)) == torch.device("mps")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("cuda", "torch sees no CUDA device"),
        ("mps", "MPS backend is not available"),
        ("tpu", "unknown device 'tpu'"),
        ("cpu:1", "unknown device"),
        ("cuda:x", "unknown device"),
    ],
)
def test_a_missing_or_unknown_device_is_one_clear_error(name: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        resolve_device(name, **_probes(False, False))


def test_auto_on_this_machine_is_a_usable_device() -> None:
    device = resolve_device("auto")
    assert torch.zeros(1, device=device).device.type == device.type


def test_training_on_an_explicit_cpu_device_matches_the_default() -> None:
    """The device is only where the steps run: same seed, same data, same CPU → same weights;
    what a trainer sends is float32 numpy on the host whatever the device."""
    data = load_digits_dataset().subset(np.arange(200))
    spec = ModelSpec(family="mlp", input_dim=64, hidden=[16])
    start = get_weights(build_model(spec))
    a, _ = train_local(spec, start, data, TrainingSpec(), seed=3)
    b, _ = train_local(spec, start, data, TrainingSpec(), seed=3, device=resolve_device("cpu"))
    assert all(np.array_equal(a[k], b[k]) and b[k].dtype == np.float32 for k in a)


def _digits_round() -> tuple:
    from backend.core.datasets import split_train_validation_test

    train, val, _ = split_train_validation_test(load_digits_dataset())
    return ModelSpec(hidden=[16]), train, val


def _charlm_round() -> tuple:
    from backend.core.datasets import stdlib_split

    spec = ModelSpec(family="charlm", input_dim=16, num_classes=256, width=16, depth=1, heads=2)
    split = stdlib_split(1, 16, 4096, 1024, 512)
    return spec, split.shards[0], split.validation


@pytest.mark.parametrize("setting", [_digits_round, _charlm_round], ids=["mlp", "charlm"])
def test_the_round_result_does_not_depend_on_the_aggregators_thread_count(setting) -> None:
    """The round runs on the CPU in float64, on one torch thread, wherever the trainers
    trained: the same inputs give the same model bytes, fixed-point scores and reasons whatever
    thread count the process had (charlm's LayerNorm backward splits its sums by thread)."""
    from aggregator.round.compute import Submission, compute_round
    from backend.core import codec
    from backend.core.datasets import shard
    from backend.core.jobspec import JobSpec
    from backend.core.training import pseudo_gradient

    model, train, val = setting()
    spec = JobSpec(model=model)
    w0 = get_weights(build_model(spec.model))
    subs = []
    for i, part in enumerate(shard(train, 4)):
        w, _ = train_local(spec.model, w0, part, spec.training, seed=i)
        subs.append(Submission(f"0x{i + 1:040x}", codec.encode(pseudo_gradient(w0, w)), i))
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(compute_round(spec, w0, subs, val))
            assert torch.get_num_threads() == n  # restored
    finally:
        torch.set_num_threads(threads)
    a, b = results
    assert a.next_model_blob == b.next_model_blob
    assert a.scores_fp == b.scores_fp and a.reasons == b.reasons
    assert [o.score for o in a.outcomes] == [o.score for o in b.outcomes]


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(family="logreg", input_dim=64),
        ModelSpec(family="mlp", input_dim=64, hidden=[8]),
        ModelSpec(family="cnn", input_dim=784),
        ModelSpec(family="charlm", input_dim=16, num_classes=256, width=16, depth=1, heads=2),
    ],
    ids=lambda s: s.family,
)
def test_every_family_trains_on_the_selected_device(spec: ModelSpec) -> None:
    """Each family's local training runs on `--device auto` (the CPU here) and hands back
    float32 host arrays of the template's names and shapes: what the codec sends."""
    from backend.core.datasets import Dataset
    from backend.core.models import template_of

    rng = np.random.default_rng(0)
    high = 256 if spec.family == "charlm" else 2
    x = rng.integers(0, high, size=(24, spec.input_dim)).astype(np.float32)
    y = rng.integers(0, spec.num_classes, size=24)
    start = get_weights(build_model(spec))
    local, loss = train_local(
        spec, start, Dataset(x, y), TrainingSpec(batch_size=8), device=resolve_device("auto")
    )
    template = template_of(spec)
    assert np.isfinite(loss)
    assert {k: v.shape for k, v in local.items()} == dict(
        zip(template.names, template.shapes, strict=True)
    )
    assert all(v.dtype == np.float32 for v in local.values())
    assert any(not np.array_equal(local[k], start[k]) for k in start)


def test_the_round_computes_on_one_torch_thread_and_restores_the_count(monkeypatch) -> None:
    """charlm's float64 gradient differs in the last bits between 1 and 2 threads (LayerNorm's
    backward), so the round pins one thread, and gives the process its count back."""
    import aggregator.round.compute as compute
    from backend.core.datasets import split_train_validation_test
    from backend.core.jobspec import JobSpec

    seen: list[int] = []
    real = compute.evaluate

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(compute, "evaluate", spy)
    _, val, _ = split_train_validation_test(load_digits_dataset())
    spec = JobSpec(model=ModelSpec(hidden=[8]))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        compute.compute_round(spec, get_weights(build_model(spec.model)), [], val)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
