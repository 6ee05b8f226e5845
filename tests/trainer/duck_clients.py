"""Flower-style clients that do not import flwr: the adapter only duck-types `NumPyClient`
(`get_parameters(config)`, `fit(parameters, config)`), so these run without the extra."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from backend.core.datasets import Dataset, load_digits_dataset


def mlp(hidden: int = 16) -> nn.Module:
    """The digits jobs' MLP, under the job's own names ("0.", "2.")."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


class DuckClient:
    """A NumPyClient in all but name: SGD on its own data, the arrays in state_dict order."""

    def __init__(self, net: nn.Module | None = None, data: Dataset | None = None) -> None:
        self.net = mlp() if net is None else net
        self.data = data  # loaded on the first fit when not given
        self.fits: list[tuple[list[np.ndarray], dict[str, Any]]] = []

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [v.detach().cpu().numpy() for v in self.net.state_dict().values()]

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        self.fits.append(([p.copy() for p in parameters], dict(config)))
        if self.data is None:
            self.data = load_digits_dataset()
        keys = list(self.net.state_dict())
        self.net.load_state_dict(OrderedDict(zip(keys, map(torch.tensor, parameters), strict=True)))
        opt = torch.optim.SGD(self.net.parameters(), lr=float(config["lr"]))
        x = torch.as_tensor(self.data.x, dtype=torch.float32)
        y = torch.as_tensor(self.data.y, dtype=torch.long)
        loss = torch.tensor(float("nan"))
        for start in range(0, len(y), int(config["batch_size"])):
            opt.zero_grad()
            out = self.net(x[start : start + int(config["batch_size"])])
            loss = nn.functional.cross_entropy(out, y[start : start + int(config["batch_size"])])
            loss.backward()
            opt.step()
        return self.get_parameters({}), len(y), {"loss": float(loss.item())}


class ThreeArrays(DuckClient):
    """Forgets the last bias: three arrays for the job's four tensors."""

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return super().get_parameters(config)[:3]


class NumPyClientWrapper:
    """What flwr's `NumPyClient.to_client()` returns: a `Client` (other signatures) keeping the
    NumPyClient as `numpy_client`."""

    def __init__(self, numpy_client: DuckClient) -> None:
        self.numpy_client = numpy_client

    def get_parameters(self, ins: object) -> object:
        raise AssertionError("the adapter must call the NumPyClient, not the wrapper")

    def fit(self, ins: object) -> object:
        raise AssertionError("the adapter must call the NumPyClient, not the wrapper")


client = DuckClient()
three_arrays = ThreeArrays()
wrapped = NumPyClientWrapper(DuckClient())
not_a_client = 42


def client_fn() -> NumPyClientWrapper:
    return NumPyClientWrapper(DuckClient())


def needs_arguments(context: object) -> DuckClient:
    return DuckClient()


def make_module() -> nn.Module:
    return mlp()


def broken_factory() -> DuckClient:
    raise RuntimeError("no GPU here")
