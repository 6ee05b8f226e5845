"""Where a trainer's local training runs: `--device auto|cpu|cuda|mps`.

Only local training moves to an accelerator. Its result leaves the trainer as float32 bytes,
and everything that decides a round (decoding, screening, scoring, aggregation) runs on the
CPU in float64 (`aggregator.round`), so the aggregator's result, and a verifier's re-run of
it, does not depend on the hardware any trainer used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from backend.core.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(
    name: str,
    *,
    cuda_available: Callable[[], bool] = torch.cuda.is_available,
    mps_available: Callable[[], bool] = _mps_available,
) -> torch.device:
    """The torch device for `name`: `auto` picks CUDA, then Apple's MPS, then the CPU;
    `cuda` may name an index (`cuda:1`). Asking for a device torch cannot see is an error
    that says what to use instead."""
    kind, _, index = name.strip().lower().partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(
            f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N)"
        )
    if kind == "auto":
        if cuda_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    if kind == "cuda" and not cuda_available():
        raise ConfigError(
            f"--device {name}: torch sees no CUDA device (this torch build: "
            f"{torch.__version__}); use --device cpu, or auto to take what exists"
        )
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {name}: there are {torch.cuda.device_count()} CUDA devices "
            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
        )
    if kind == "mps" and not mps_available():
        raise ConfigError(
            f"--device {name}: Apple's MPS backend is not available here; use --device cpu"
        )
    return torch.device(name.strip().lower())


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the count: some CPU kernels split their
    reductions by thread (LayerNorm's backward, for one), so a round computed with 2 threads
    could differ in the last bits from a verifier's with 8. The round is small next to
    training; it pays one thread for results that do not depend on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
