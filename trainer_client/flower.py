"""An existing Flower client as a fedmarket trainer (`fedmarket trainer run --flower-client`).

The client is a Flower `NumPyClient` (flwr 1.x): `get_parameters(config)` returns the model's
arrays and `fit(parameters, config)` trains on the client's own data and returns
`(arrays, num_examples, metrics)`. Flower's convention is that the arrays are the torch
model's `state_dict()` values, in order. Only that interface is used: flwr is never imported
here, so a client written without flwr works too.

Which of the job's tensors each array is (the rule, checked every round before `fit`):

* The client's torch module, if it has one as an attribute (`net`, else `model`, else the only
  `torch.nn.Module` attribute), names the arrays: its `state_dict()` keys, when there are as
  many keys as arrays.
* Those names are all the job's names → the arrays are matched **by name** (any order).
* None of them is a job's name, or no module was found → matched **by position**: array *i* is
  the job's *i*-th tensor (`backend.core.models.template_of`, the model's state order).
* Some but not all are the job's names → an error: a layer matched by position while another of
  the same name sits elsewhere would be silently misplaced.

Every array must then have the shape of its tensor, a real (float or integer) dtype and, once
trained, finite values. Any mismatch (count, name, shape, dtype, non-finite) is a ConfigError of
one line naming the first offending array and what the job expects there.

`fit`'s arrays become the pseudo-gradient (global − local) like an honest trainer's local
weights; the codec, sealing, commit, publish and reveal are `TrainerClient`'s, unchanged.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from eth_account.signers.local import LocalAccount
from torch import nn

from backend.chain.market import MarketClient
from backend.core.codec import Template, Tensors
from backend.core.datasets import Dataset
from backend.core.errors import ConfigError
from backend.core.jobspec import JobSpec
from backend.core.models import template_of
from backend.protocol.fetch import fetch_job_spec
from backend.storage import ContentStore
from trainer_client.client import StageProgress, TrainerClient

#: Attributes looked at first for the client's torch module (Flower's examples use `net`).
MODULE_ATTRIBUTES = ("net", "model")
#: Metrics keys read as the training loss reported with the commit (else NaN).
LOSS_METRICS = ("loss", "train_loss")
#: A Flower client keeps its own data; the base class's shard is never read.
NO_DATA = Dataset(np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64))


@runtime_checkable
class NumPyClientLike(Protocol):
    """The part of Flower's `NumPyClient` a fedmarket trainer uses."""

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]: ...

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]: ...


# -- loading `module:attr` -------------------------------------------------------------------
def load_flower_client(ref: str) -> NumPyClientLike:
    """The NumPyClient that `module:attr` names: an instance, its class, a function of no
    arguments returning one, or any of these wrapped by Flower's `.to_client()`."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"--flower-client {ref!r}: expected MODULE:ATTR, e.g. my_client:FlowerClient"
        )
    obj: Any = _import(ref, module_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"--flower-client {ref}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return _as_numpy_client(ref, obj)


def _import(ref: str, module_name: str) -> Any:
    # As `python -m` and uvicorn do: a client module in the current directory is importable.
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"--flower-client {ref}: no module named {module_name!r} (run from its folder "
                "or put it on PYTHONPATH)"
            ) from None
        raise ConfigError(f"--flower-client {ref}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the client's own module failed: one line, not its traceback
        raise ConfigError(
            f"--flower-client {ref}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None


def _unwrap(obj: Any) -> Any:
    """The NumPyClient inside a flwr `Client` made by `NumPyClient.to_client()` (flwr keeps it
    as the wrapper's `numpy_client` attribute), else `obj`."""
    inner = getattr(obj, "numpy_client", None)
    return inner if isinstance(inner, NumPyClientLike) else obj


def _as_numpy_client(ref: str, obj: Any) -> NumPyClientLike:
    obj = _unwrap(obj)
    if type(obj).__name__ == "ClientApp":
        raise ConfigError(
            f"--flower-client {ref} is a ClientApp, which runs under Flower's own runtime: point "
            "at the NumPyClient, its class or a function of no arguments returning it"
        )
    if callable(obj) and (isinstance(obj, type) or not isinstance(obj, NumPyClientLike)):
        obj = _unwrap(_call_without_arguments(ref, obj))
    if isinstance(obj, type) or not isinstance(obj, NumPyClientLike):
        raise ConfigError(
            f"--flower-client {ref} gives an object of type {type(obj).__name__}, not a Flower "
            "NumPyClient (get_parameters(config) and fit(parameters, config))"
        )
    return obj


def _call_without_arguments(ref: str, factory: Any) -> Any:
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise ConfigError(
            f"--flower-client {ref} needs arguments: point at a NumPyClient instance, its class "
            "or a function that takes no arguments"
        ) from None
    except ValueError:  # no signature to inspect (a builtin): just call it
        pass
    try:
        return factory()
    except Exception as exc:
        raise ConfigError(
            f"--flower-client {ref}: calling it failed: {type(exc).__name__}: {exc}"
        ) from None


# -- which job tensor each array is ----------------------------------------------------------
def torch_module_of(client: Any) -> nn.Module | None:
    """The client's torch model, if it keeps one as an attribute (see MODULE_ATTRIBUTES)."""
    modules = {k: v for k, v in getattr(client, "__dict__", {}).items() if isinstance(v, nn.Module)}
    for name in MODULE_ATTRIBUTES:
        if name in modules:
            return modules[name]
    return next(iter(modules.values())) if len(modules) == 1 else None


@dataclass(frozen=True)
class ArrayLayout:
    """How the client's arrays line up with the job's tensors: array i is `names[i]`, held by
    the client in `dtypes[i]` (the global weights are handed to `fit` in that dtype)."""

    names: tuple[str, ...]
    dtypes: tuple[np.dtype, ...]
    client_names: tuple[str, ...] | None  # the module's state_dict keys, when they name them


def _shape(a: np.ndarray) -> str:
    return str(tuple(int(s) for s in a.shape))


def _label(i: int, client_names: Sequence[str] | None) -> str:
    return f"array {i}" + (f" ({client_names[i]!r})" if client_names else "")


def _model_hint(template: Template) -> str:
    listed = ", ".join(f"{n} {s}" for n, s in zip(template.names, template.shapes, strict=True))
    return f"give the Flower client the job's model (state_dict: {listed})"


def match_arrays(
    arrays: Sequence[Any], client_names: Sequence[str] | None, template: Template, source: str
) -> ArrayLayout:
    """Line the client's arrays up with `template` by the rule in this module's docstring;
    `source` says where the arrays came from (in the error)."""
    if len(arrays) != len(template.names):
        raise ConfigError(
            f"the Flower client's {source} gave {len(arrays)} arrays; the job's model has "
            f"{len(template.names)} tensors: {_model_hint(template)}"
        )
    if client_names is not None and len(client_names) != len(arrays):
        client_names = None  # its state_dict does not name these arrays: by position
    shapes = dict(zip(template.names, template.shapes, strict=True))
    by_name = client_names is not None and set(client_names) == set(template.names)
    if client_names is not None and not by_name and set(client_names) & set(shapes):
        # Some, not all, of the names are the job's: by position one of them may land elsewhere.
        odd = next(i for i, n in enumerate(client_names) if n not in shapes)
        raise ConfigError(
            f"the Flower client's {source} {_label(odd, client_names)} of shape "
            f"{_shape(np.asarray(arrays[odd]))} is not a tensor of the job's model (position "
            f"{odd} there is {template.names[odd]!r} {template.shapes[odd]}), while other "
            "arrays' names are: name the client's layers as the job's model does (or none "
            "alike, to match by position)"
        )
    names = tuple(client_names) if by_name and client_names else template.names
    dtypes = []
    for i, (array, name) in enumerate(zip(arrays, names, strict=True)):
        a = np.asarray(array)
        if a.dtype.kind not in "fiu":
            raise ConfigError(
                f"the Flower client's {source} {_label(i, client_names)} has dtype {a.dtype}, "
                f"not a number the job's tensor {name!r} can take: return float arrays"
            )
        if tuple(int(s) for s in a.shape) != shapes[name]:
            where = f"{name!r}" if by_name else f"tensor at position {i}, {name!r},"
            raise ConfigError(
                f"the Flower client's {source} {_label(i, client_names)} has shape {_shape(a)}; "
                f"the job's {where} has shape {shapes[name]}: {_model_hint(template)}"
            )
        dtypes.append(a.dtype if a.dtype.kind == "f" else np.dtype(np.float32))
    return ArrayLayout(names, tuple(dtypes), None if client_names is None else tuple(client_names))


def named_weights(
    arrays: Sequence[Any], layout: ArrayLayout, template: Template, source: str
) -> Tensors:
    """`arrays` (in the client's order) as the job's float32 tensors, in the job's order;
    count, shapes and finiteness checked."""
    match_arrays(arrays, layout.client_names, template, source)
    weights = dict(zip(layout.names, arrays, strict=True))
    out: Tensors = {}
    for name in template.names:
        a = np.asarray(weights[name], dtype=np.float32)
        if not np.isfinite(a).all():
            i = layout.names.index(name)
            raise ConfigError(
                f"the Flower client's {source} array {i} (the job's {name!r}, shape "
                f"{_shape(a)}) has NaN or Inf values: its local training diverged"
            )
        out[name] = a
    return out


def fit_config(spec: JobSpec, job_id: int, round_: int) -> dict[str, Any]:
    """What `fit` is told: the job's training hints, the round and the job."""
    return {**spec.training.model_dump(), "round": round_, "job_id": job_id}


def _loss_of(metrics: Any) -> float:
    if isinstance(metrics, Mapping):
        for key in LOSS_METRICS:
            value = metrics.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return math.nan


def _call(what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # the client's own code failed: one line, not its traceback
        raise ConfigError(
            f"the Flower client's {what} failed: {type(exc).__name__}: {exc}"
        ) from exc


def check_flower_client(client: NumPyClientLike, template: Template) -> None:
    """Fail now, in one line, if the client's arrays do not fit the job's model (as every
    round checks again: a client may change its model between rounds)."""
    _current_layout(client, template, {})


def _current_layout(client: NumPyClientLike, template: Template, config: dict) -> ArrayLayout:
    current = _call("get_parameters", client.get_parameters, dict(config))
    if not isinstance(current, list | tuple):
        raise ConfigError(
            f"the Flower client's get_parameters returned a {type(current).__name__}, "
            "not a list of arrays"
        )
    module = torch_module_of(client)
    names = list(module.state_dict()) if module is not None else None
    return match_arrays(current, names, template, "get_parameters")


def flower_round(
    client: NumPyClientLike, w_global: Mapping[str, np.ndarray], template: Template, config: dict
) -> tuple[Tensors, float]:
    """One `fit` from the global weights; returns (local weights by job name, train loss)."""
    layout = _current_layout(client, template, config)
    parameters = [
        np.asarray(w_global[n], dtype=d) for n, d in zip(layout.names, layout.dtypes, strict=True)
    ]
    result = _call("fit", client.fit, parameters, dict(config))
    if not (isinstance(result, tuple | list) and len(result) == 3):
        raise ConfigError(
            "the Flower client's fit must return (parameters, num_examples, metrics); "
            f"it returned a {type(result).__name__}"
        )
    arrays, _, metrics = result
    if not isinstance(arrays, list | tuple):
        raise ConfigError(
            f"the Flower client's fit returned {type(arrays).__name__} parameters, "
            "not a list of arrays"
        )
    return named_weights(arrays, layout, template, "fit"), _loss_of(metrics)


class FlowerTrainer(TrainerClient):
    """A `TrainerClient` whose local training is a Flower client's `fit` on its own data."""

    def __init__(
        self,
        market: MarketClient,
        store: ContentStore,
        account: LocalAccount,
        flower_client: NumPyClientLike,
        *,
        seed: int = 0,
        state_file: Path | None = None,
        progress: StageProgress | None = None,
    ) -> None:
        super().__init__(
            market, store, account, NO_DATA, seed=seed, state_file=state_file, progress=progress
        )
        self.flower_client = flower_client

    def spec(self, job_id: int) -> JobSpec:
        # No data file to check against the job: the Flower client keeps its own data, and
        # its arrays are checked against the model every round instead.
        if job_id not in self._specs:
            spec = fetch_job_spec(self.market, self.store, job_id)
            if spec.privacy is not None:
                # fedmarket cannot put DP-SGD inside someone else's fit, and silently training
                # without it would expose the very data the job promised to protect
                raise ConfigError(
                    f"job {job_id} asks its trainers for DP-SGD ([privacy]); a Flower client "
                    "trains on its own, so train this job with --data instead"
                )
            self._specs[job_id] = spec
        return self._specs[job_id]

    def local_update(self, job_id: int, round_: int) -> tuple[Tensors, float]:
        """The Flower client's `fit` from the current global model; returns (Δ, train loss)."""
        spec = self.spec(job_id)
        w_global = self.global_weights(job_id)
        on_train = self._stage("train")
        if on_train is not None:
            on_train(0, 1)  # one "step": Flower's fit reports no progress of its own
        w_local, loss = flower_round(
            self.flower_client, w_global, template_of(spec.model), fit_config(spec, job_id, round_)
        )
        if on_train is not None:
            on_train(1, 1)
        return self.make_update(w_global, w_local, self.seed * 1_000_003 + round_), loss


__all__ = [
    "FlowerTrainer",
    "NumPyClientLike",
    "check_flower_client",
    "load_flower_client",
    "match_arrays",
]
