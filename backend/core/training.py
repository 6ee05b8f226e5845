"""Local training and the pseudo-gradient. Pure compute: no chain, no storage.

Shared by trainers (their update) and the aggregator (its reference direction).

The trainer's data never leaves this module's caller; only Δ = w_global − w_local does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from backend.core.codec import Tensors
from backend.core.datasets import Dataset
from backend.core.jobspec import TrainingSpec
from backend.core.models import ModelSpec, batch_loss, build_model, get_weights, set_weights


def train_local(
    spec: ModelSpec,
    global_weights: Mapping[str, np.ndarray],
    data: Dataset,
    training: TrainingSpec,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensors, float]:
    """Start from the global weights, run local SGD epochs; return (local weights, last loss).

    `on_step(done, total)` is called after each optimizer step (a progress bar's hook).
    `device` is where the steps run (`backend.core.devices.resolve_device`); the batch order
    is drawn on the CPU, so it is the same on every device.
    """
    model = build_model(spec)
    set_weights(model, global_weights)
    model.to(device)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=training.lr, momentum=training.momentum)
    x = torch.as_tensor(data.x, dtype=torch.float32).to(device)
    y = torch.as_tensor(data.y, dtype=torch.long).to(device)
    loss_value = float("nan")
    per_epoch = -(-len(y) // training.batch_size)
    total, done = per_epoch * training.local_epochs, 0
    for _ in range(training.local_epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), training.batch_size):
            idx = order[start : start + training.batch_size].to(device)
            opt.zero_grad()
            loss = batch_loss(spec, model, x[idx], y[idx])
            loss.backward()
            opt.step()
            loss_value = float(loss.item())
            done += 1
            if on_step is not None:
                on_step(done, total)
    return get_weights(model), loss_value


def pseudo_gradient(
    global_weights: Mapping[str, np.ndarray], local_weights: Mapping[str, np.ndarray]
) -> Tensors:
    """Δ = w_global − w_local, the update an outer optimizer treats as a gradient."""
    return {
        k: (
            np.asarray(global_weights[k], dtype=np.float32)
            - np.asarray(local_weights[k], dtype=np.float32)
        )
        for k in global_weights
    }
