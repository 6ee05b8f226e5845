"""Where a simulated trainer fleet trains: in this process, or on Ray.

A simulation of many trainers spends most of its time in their local training, which is pure:
the global weights, a shard and a seed in; the local weights and the last loss out. An engine
runs a round's batch of these tasks. `LocalEngine` runs them one after another here;
`RayEngine` hands them to Ray (PyPI `ray`), on this machine or on a cluster, as Flower's
simulation does, instead of a home-made process pool. The chain, the store and the aggregator
stay in the calling process: they are what the simulation measures.

Each task trains on one torch thread, on either engine, so an update is the same bytes wherever
it ran (a float sum split across threads is ordered differently).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from backend.core.codec import Tensors
from backend.core.datasets import Dataset
from backend.core.jobspec import TrainingSpec
from backend.core.models import ModelSpec
from backend.core.training import train_local

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class TrainTask:
    """One trainer's local training in one round."""

    shard: int  # index of the trainer's shard, as given to `Engine.load`
    seed: int


class Engine(Protocol):
    def load(self, model: ModelSpec, training: TrainingSpec, shards: Sequence[Dataset]) -> None:
        """Fix the job's model, training settings and every trainer's shard (once)."""

    def train(self, weights: Tensors, tasks: Sequence[TrainTask]) -> list[tuple[Tensors, float]]:
        """(local weights, last loss) of each task, in task order, from `weights`."""

    def close(self) -> None:
        """Release what the engine holds."""


def train_batch(
    model: ModelSpec,
    training: TrainingSpec,
    weights: Tensors,
    shards: Sequence[Dataset],
    seeds: Sequence[int],
) -> list[tuple[Tensors, float]]:
    """Train each shard with its seed, on one torch thread (the engines' unit of work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [
            train_local(model, weights, shard, training, seed=seed)
            for shard, seed in zip(shards, seeds, strict=True)
        ]
    finally:
        torch.set_num_threads(threads)


class LocalEngine:
    """Every task in this process, in order."""

    def __init__(self) -> None:
        self._job: tuple[ModelSpec, TrainingSpec, Sequence[Dataset]] | None = None

    def load(self, model: ModelSpec, training: TrainingSpec, shards: Sequence[Dataset]) -> None:
        self._job = (model, training, shards)

    def train(self, weights: Tensors, tasks: Sequence[TrainTask]) -> list[tuple[Tensors, float]]:
        if self._job is None:
            raise RuntimeError("LocalEngine.train before load")
        model, training, shards = self._job
        return train_batch(
            model, training, weights, [shards[t.shard] for t in tasks], [t.seed for t in tasks]
        )

    def close(self) -> None:
        self._job = None


class RayEngine:
    """Tasks on Ray: `address` None starts a local Ray on this machine (`num_cpus` workers);
    "auto" or "ray://host:10001" joins a running cluster (README, "Scale"). A round's tasks
    go out in `chunks_per_cpu` × CPUs chunks, so a task's overhead is paid per chunk, not per
    trainer; shards and the round's weights go to Ray's object store once each."""

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, chunks_per_cpu: int = 4
    ) -> None:
        # Ray 2.55 warns that it will stop hiding accelerators from CPU-only tasks; these
        # tasks use none, so take the future behaviour now and keep the output clean.
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        import ray  # imported here: only this engine needs it

        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        self._remote = ray.remote(_ray_batch)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self._chunks = max(1, cpus * chunks_per_cpu)
        self._job: tuple[Any, Any, list[Any]] | None = None

    def load(self, model: ModelSpec, training: TrainingSpec, shards: Sequence[Dataset]) -> None:
        put = self._ray.put
        self._job = (put(model), put(training), [put(s) for s in shards])

    def train(self, weights: Tensors, tasks: Sequence[TrainTask]) -> list[tuple[Tensors, float]]:
        if self._job is None:
            raise RuntimeError("RayEngine.train before load")
        model, training, shards = self._job
        weights_ref = self._ray.put(weights)
        size = -(-len(tasks) // self._chunks)
        chunks = [tasks[i : i + size] for i in range(0, len(tasks), size)]
        futures = [
            self._remote.remote(
                model, training, weights_ref, [t.seed for t in c], *[shards[t.shard] for t in c]
            )
            for c in chunks
        ]
        return [result for chunk in self._ray.get(futures) for result in chunk]

    def close(self) -> None:
        self._job = None
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def _ray_batch(
    model: ModelSpec,
    training: TrainingSpec,
    weights: Tensors,
    seeds: list[int],
    *shards: Dataset,
) -> list[tuple[Tensors, float]]:
    """A Ray task: `train_batch` on shards passed as object refs (Ray resolves them)."""
    return train_batch(model, training, weights, shards, seeds)


def make_engine(name: str, address: str | None = None, num_cpus: int | None = None) -> Engine:
    """The engine called `name` (ENGINES); a ValueError names the choices."""
    if name == "local":
        return LocalEngine()
    if name == "ray":
        return RayEngine(address, num_cpus)
    raise ValueError(f"unknown engine {name!r}; use local or ray")
