"""A Flower client written as Flower's PyTorch quickstart writes one (flwr 1.x `NumPyClient`),
with nothing of fedmarket in it: the tests load it as `module:attr`, like a user's file.

Its model is the digits job's MLP (64 → 16 → 10); the variants below differ from it in one way
each (the job's names; wider, deeper, a layer named apart) to check the mapping and its errors.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    """The job's MLP under Flower-style layer names (fc1, fc2): matched by position."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def load_data(partition_id: int, num_partitions: int) -> DataLoader:
    """This client's own partition of scikit-learn's digits (every num_partitions-th row)."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    idx = np.arange(len(y))[partition_id::num_partitions]
    data = TensorDataset(torch.tensor(x[idx]), torch.tensor(y[idx]))
    return DataLoader(data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


def train(
    net: nn.Module, trainloader: DataLoader, epochs: int, lr: float, momentum: float
) -> float:
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    net.train()
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        for images, labels in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(images), labels)
            loss.backward()
            optimizer.step()
    return float(loss.item())


def set_parameters(net: nn.Module, parameters: list[np.ndarray]) -> None:
    params_dict = zip(net.state_dict().keys(), parameters, strict=True)
    state_dict = OrderedDict({k: torch.tensor(v) for k, v in params_dict})
    net.load_state_dict(state_dict, strict=True)


class FlowerClient(NumPyClient):
    def __init__(self, net: nn.Module | None = None, partition_id: int = 0) -> None:
        self.net = Net() if net is None else net
        self.trainloader = load_data(partition_id, num_partitions=3)

    def get_parameters(self, config):
        return [val.cpu().numpy() for _, val in self.net.state_dict().items()]

    def fit(self, parameters, config):
        set_parameters(self.net, parameters)
        loss = train(
            self.net,
            self.trainloader,
            epochs=int(config["local_epochs"]),
            lr=float(config["lr"]),
            momentum=float(config["momentum"]),
        )
        return self.get_parameters(config={}), len(self.trainloader.dataset), {"train_loss": loss}


#: an instance, as `module:client`
client = FlowerClient()


def client_fn():
    """A function of no arguments returning the flwr `Client` wrapper (`.to_client()`)."""
    return FlowerClient(partition_id=1).to_client()


def sequential() -> FlowerClient:  # the job's own layer names ("0.", "2."): matched by name
    return FlowerClient(nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)))


def context_client_fn(context):
    """Flower's own form: a client_fn of the run's Context, for a ClientApp."""
    return FlowerClient().to_client()


#: a ClientApp runs under Flower's runtime, not as a fedmarket trainer (a one-line error)
app = ClientApp(client_fn=context_client_fn)


def wider() -> FlowerClient:  # 32 hidden units: a shape mismatch
    return FlowerClient(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))


def deeper() -> FlowerClient:  # an extra layer: six arrays, not four
    layers = [nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10)]
    return FlowerClient(nn.Sequential(*layers))


def with_dropout() -> FlowerClient:  # same shapes, but the last layer is "3.", not "2."
    return FlowerClient(
        nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(), nn.Linear(16, 10))
    )
