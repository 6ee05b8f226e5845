"""trainer_client.flower without flwr: a duck-typed NumPyClient, the array mapping rule and its
one-line errors, loading MODULE:ATTR, and a full round in which it is scored as honest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backend.core.datasets import load_digits_dataset, split_train_validation_test
from backend.core.errors import ConfigError
from backend.core.models import ModelSpec, build_model, get_weights, template_of
from tests.trainer import duck_clients
from tests.trainer.duck_clients import DuckClient, mlp
from trainer_client.flower import (
    FlowerTrainer,
    flower_round,
    load_flower_client,
    match_arrays,
    torch_module_of,
)

TEMPLATE = template_of(ModelSpec(hidden=[16]))  # 0.weight (16, 64), 0.bias, 2.weight, 2.bias
CONFIG = {"local_epochs": 1, "batch_size": 64, "lr": 0.1, "momentum": 0.0, "round": 3, "job_id": 7}


def _arrays(net: nn.Module) -> list[np.ndarray]:
    return [v.detach().numpy() for v in net.state_dict().values()]


class _Named(nn.Module):
    """The job's layers under other names (fc1, fc2)."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)


class _Reordered(nn.Module):
    """The job's names, in another state_dict order (2. before 0.)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module("2", nn.Linear(16, 10))
        self.add_module("0", nn.Linear(64, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_submodule("2")(torch.relu(self.get_submodule("0")(x)))


def test_the_job_names_match_by_name_in_any_order() -> None:
    net = _Reordered()
    layout = match_arrays(_arrays(net), list(net.state_dict()), TEMPLATE, "get_parameters")
    assert layout.names == ("2.weight", "2.bias", "0.weight", "0.bias")
    assert set(layout.names) == set(TEMPLATE.names)


def test_other_names_or_no_module_match_by_position() -> None:
    net = _Named()
    assert match_arrays(_arrays(net), list(net.state_dict()), TEMPLATE, "x").names == (
        TEMPLATE.names
    )
    assert match_arrays(_arrays(net), None, TEMPLATE, "x").names == TEMPLATE.names
    # a state_dict that does not name the arrays (other count) is not used to name them
    assert match_arrays(_arrays(net), ["a"], TEMPLATE, "x").names == TEMPLATE.names


@pytest.mark.parametrize(
    ("arrays", "names", "match"),
    [
        (_arrays(mlp())[:3], None, "get_parameters gave 3 arrays; the job's model has 4 tensors"),
        (
            _arrays(_Named(32)),
            ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"],
            "array 0 ('fc1.weight') has shape (32, 64); the job's tensor at position 0, "
            "'0.weight', has shape (16, 64)",
        ),
        (
            _arrays(mlp(8)),
            ["0.weight", "0.bias", "2.weight", "2.bias"],
            "array 0 ('0.weight') has shape (8, 64); the job's '0.weight' has shape (16, 64)",
        ),
        (
            _arrays(mlp()),
            ["0.weight", "0.bias", "3.weight", "3.bias"],
            "array 2 ('3.weight') of shape (10, 16) is not a tensor of the job's model (position "
            "2 there is '2.weight' (10, 16))",
        ),
        (
            [*_arrays(mlp())[:3], np.array(["a"] * 10)],
            None,
            "array 3 has dtype <U1, not a number the job's tensor '2.bias' can take",
        ),
    ],
)
def test_a_mismatch_names_the_first_offending_array(arrays, names, match) -> None:
    with pytest.raises(ConfigError) as err:
        match_arrays(arrays, names, TEMPLATE, "get_parameters")
    assert match in str(err.value)
    assert "\n" not in str(err.value)


def test_fit_gets_the_global_weights_in_its_order_and_the_job_hints() -> None:
    net = _Reordered()
    client = DuckClient(net)
    assert torch_module_of(client) is net
    w_global = get_weights(build_model(ModelSpec(hidden=[16], seed=5)))
    w_local, loss = flower_round(client, w_global, TEMPLATE, CONFIG)
    ((parameters, config),) = client.fits
    assert config == CONFIG
    for name, given in zip(("2.weight", "2.bias", "0.weight", "0.bias"), parameters, strict=True):
        np.testing.assert_array_equal(given, w_global[name])
    assert list(w_local) == list(TEMPLATE.names)  # the job's order, whatever the client's
    trained = dict(zip(net.state_dict(), _arrays(net), strict=True))
    for name in TEMPLATE.names:
        np.testing.assert_array_equal(w_local[name], trained[name])
        assert not np.array_equal(w_local[name], w_global[name])
    assert np.isfinite(loss) and loss > 0  # the metrics' "loss"


def test_a_fit_that_diverges_or_returns_junk_is_one_line() -> None:
    w_global = get_weights(build_model(ModelSpec(hidden=[16])))

    class Diverging(DuckClient):
        def fit(self, parameters, config):
            out = [p.copy() for p in parameters]
            out[1][0] = np.nan
            return out, 1, {}

    class Junk(DuckClient):
        def fit(self, parameters, config):
            return parameters

    class Raising(DuckClient):
        def fit(self, parameters, config):
            raise RuntimeError("CUDA out of memory")

    cases = [
        (Diverging(), "fit array 1 (the job's '0.bias', shape (16,)) has NaN or Inf values"),
        (Junk(), "fit must return (parameters, num_examples, metrics); it returned a list"),
        (Raising(), "the Flower client's fit failed: RuntimeError: CUDA out of memory"),
    ]
    for client, match in cases:
        with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace(")", r"\)")):
            flower_round(client, w_global, TEMPLATE, CONFIG)


def test_module_attr_loads_an_instance_a_class_a_factory_or_a_to_client_wrapper() -> None:
    assert load_flower_client("tests.trainer.duck_clients:client") is duck_clients.client
    assert isinstance(load_flower_client("tests.trainer.duck_clients:DuckClient"), DuckClient)
    wrapped = load_flower_client("tests.trainer.duck_clients:wrapped")
    assert wrapped is duck_clients.wrapped.numpy_client
    assert isinstance(load_flower_client("tests.trainer.duck_clients:client_fn"), DuckClient)
    with pytest.raises(ConfigError, match="gives an object of type int, not a Flower NumPyClient"):
        load_flower_client("tests.trainer.duck_clients:not_a_client")


def test_a_flwr_client_fn_returning_to_client_is_unwrapped() -> None:
    pytest.importorskip("flwr", reason="the `flower` extra (flwr) is not installed")
    from tests.trainer.flower_quickstart_client import FlowerClient

    assert isinstance(
        load_flower_client("tests.trainer.flower_quickstart_client:client_fn"), FlowerClient
    )


def test_a_flower_trainer_is_scored_like_an_honest_one(
    chain, market, store, new_aggregator
) -> None:
    from aggregator.round.driver import RoundDriver
    from tests.aggregator_service.service_helpers import make_job, play_round

    aggregator = new_aggregator()
    train, val, _ = split_train_validation_test(load_digits_dataset(), seed=0)
    job = make_job(chain, market, store, aggregator.address, (train, val), trainers=3, rounds=1)
    honest = job.clients[0]
    client = DuckClient(mlp(8), data=honest.data)  # the job's MLP is 64-8-10
    job.clients[0] = FlowerTrainer(market, store, honest.account, client, seed=1)
    play_round(job, 1)
    assert len(client.fits) == 1 and client.fits[0][1]["job_id"] == job.job_id
    report = RoundDriver(market, store, aggregator, job.job_id, job.package).run_round()
    by_trainer = {o.trainer: o for o in report.outcome.outcomes}
    assert all(int(o.reason) == 0 for o in by_trainer.values()), report.outcome.outcomes
    ours = by_trainer[honest.address]
    delta = job.deltas[(1, 0)]
    norm = float(np.sqrt(sum(float((d.astype(np.float64) ** 2).sum()) for d in delta.values())))
    assert ours.update_norm == pytest.approx(norm, rel=1e-5) and norm > 0
    assert ours.score > 0


def test_a_dp_job_is_refused_not_trained_without_dp(monkeypatch: pytest.MonkeyPatch) -> None:
    """fedmarket cannot put DP-SGD inside a Flower client's fit: a job that asks for it is one
    clear error before anything is trained or committed."""
    import trainer_client.flower as flower
    from backend.core.jobspec import JobSpec, PrivacySpec

    monkeypatch.setattr(
        flower, "fetch_job_spec", lambda *_: JobSpec(privacy=PrivacySpec(target_epsilon=4.0))
    )
    trainer = FlowerTrainer(None, None, None, DuckClient(mlp(8)))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"asks its trainers for DP-SGD.*--data instead"):
        trainer.spec(7)
