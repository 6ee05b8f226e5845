"""Weights and pseudo-gradients as safetensors (never pickle), and their validation.

A `Template` describes what a job's tensors must look like (names, shapes, dtype); decoding an
untrusted blob checks it against the template and raises UpdateRejected with the reason code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from backend.errors import Reason, UpdateRejected

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class Template:
    """Names and shapes of a model's tensors, in a fixed order (the model's state order).

    Build it from the model (`backend.models.template_of`), never from tensors that came out of
    a blob: safetensors stores tensors sorted by name, so a decoded dict has another order.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, tensors: Mapping[str, np.ndarray]) -> Template:
        return cls(tuple(tensors), tuple(tuple(int(s) for s in t.shape) for t in tensors.values()))

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def flatten(self, tensors: Mapping[str, np.ndarray], dtype: type = np.float64) -> np.ndarray:
        """Concatenate the tensors in template order into one vector."""
        out = np.empty(self.size, dtype=dtype)
        offset = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            n = int(np.prod(shape))
            out[offset : offset + n] = np.asarray(tensors[name]).reshape(-1)
            offset += n
        return out

    def unflatten(self, vector: np.ndarray, dtype: type = np.float32) -> Tensors:
        """Split a flat vector back into named tensors (a copy, in `dtype`)."""
        if vector.shape != (self.size,):
            raise ValueError(f"vector of shape {vector.shape} does not fit {self.size} parameters")
        out: Tensors = {}
        offset = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            n = int(np.prod(shape))
            out[name] = np.ascontiguousarray(
                vector[offset : offset + n].reshape(shape), dtype=dtype
            )
            offset += n
        return out


def encode(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize float32 tensors as safetensors bytes (deterministic: same tensors, same bytes)."""
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    meta = dict(metadata) if metadata else None
    return st_save(arrays, metadata=meta)


def decode(
    blob: bytes, template: Template | None = None, *, max_bytes: int | None = None
) -> Tensors:
    """Decode an untrusted safetensors blob and check it against `template`.

    Raises UpdateRejected with TOO_LARGE, UNDECODABLE, WRONG_SHAPE or NON_FINITE.
    """
    if max_bytes is not None and len(blob) > max_bytes:
        raise UpdateRejected(
            Reason.TOO_LARGE, f"{len(blob)} bytes is above the job's limit of {max_bytes} bytes"
        )
    try:
        tensors = st_load(bytes(blob))
    except (SafetensorError, ValueError, json.JSONDecodeError, OverflowError) as exc:
        raise UpdateRejected(Reason.UNDECODABLE, f"not a valid safetensors blob ({exc})") from None
    except Exception as exc:  # safetensors raises assorted errors on hostile headers
        raise UpdateRejected(Reason.UNDECODABLE, f"not a valid safetensors blob ({exc})") from None
    if template is None:
        return tensors
    check_against(tensors, template)
    return {name: tensors[name] for name in template.names}  # the model's order, not the blob's


def check_against(tensors: Mapping[str, np.ndarray], template: Template) -> None:
    """Names, shapes, dtype and finiteness; raises UpdateRejected naming the first problem."""
    expected = set(template.names)
    got = set(tensors)
    if got != expected:
        missing = sorted(expected - got)
        extra = sorted(got - expected)
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:5]}")
        if extra:
            parts.append(f"unexpected tensors {extra[:5]}")
        raise UpdateRejected(Reason.WRONG_SHAPE, "; ".join(parts))
    for name, shape in zip(template.names, template.shapes, strict=True):
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise UpdateRejected(
                Reason.WRONG_SHAPE, f"tensor {name!r} has shape {tuple(t.shape)}, expected {shape}"
            )
        if t.dtype != np.float32:
            raise UpdateRejected(
                Reason.WRONG_SHAPE, f"tensor {name!r} is {t.dtype}, expected float32"
            )
    for name in template.names:
        if not np.isfinite(tensors[name]).all():
            bad = int((~np.isfinite(tensors[name])).sum())
            raise UpdateRejected(Reason.NON_FINITE, f"tensor {name!r} has {bad} NaN/Inf values")
