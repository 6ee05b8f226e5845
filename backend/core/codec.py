"""Weights and pseudo-gradients as safetensors (never pickle), and their validation.

A `Template` describes what a job's tensors must look like (names, shapes, dtype); decoding an
untrusted blob checks it against the template and raises UpdateRejected with the reason code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from backend.core.errors import Reason, UpdateRejected

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class Template:
    """Names and shapes of a model's tensors, in a fixed order (the model's state order).

    Build it from the model (`backend.core.models.template_of`), never from tensors that came out of
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

    The header is read and checked first (`read_header`), bounded by what the template needs,
    so a hostile header costs microseconds, not a parse of millions of entries.
    Raises UpdateRejected with TOO_LARGE, UNDECODABLE, WRONG_SHAPE or NON_FINITE.
    """
    if max_bytes is not None and len(blob) > max_bytes:
        raise UpdateRejected(
            Reason.TOO_LARGE, f"{len(blob)} bytes is above the job's limit of {max_bytes} bytes"
        )
    names = None if template is None else template.names
    read_header(blob, names)
    tensors = load_checked(blob)
    if template is None:
        return tensors
    check_against(tensors, template)
    return {name: tensors[name] for name in template.names}  # the model's order, not the blob's


def load_checked(blob: bytes) -> Tensors:
    """safetensors' own load, its assorted errors turned into UNDECODABLE (call after
    `read_header` has bounded what it will parse)."""
    try:
        return st_load(bytes(blob))
    except Exception as exc:  # safetensors raises assorted errors on hostile input
        raise UpdateRejected(Reason.UNDECODABLE, f"not a valid safetensors blob ({exc})") from None


# -- the header, read before safetensors parses anything -----------------------------------
#: Bytes an honest header needs per tensor beyond its name: the dtype, shape and offsets
#: (`{"dtype":"F32","shape":[..],"data_offsets":[..,..]}`, ~60 bytes plus digits), generously.
HEADER_BYTES_PER_TENSOR = 160
#: Room for `__metadata__` (codec name, Rice parameter, ...) and alignment padding.
HEADER_BYTES_FOR_METADATA = 1024
#: A header's bound when nothing says which tensors to expect.
HEADER_BYTES_UNBOUNDED = 1 << 20
_DTYPES = {"F16", "BF16", "F32", "F64", "I8", "U8", "I16", "U16", "I32", "U32", "I64", "U64"}
_DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2}
_DTYPE_BYTES |= {"U16": 2, "I32": 4, "U32": 4, "I64": 8, "U64": 8}


def header_bound(names: Collection[str]) -> int:
    """The most header bytes an honest blob holding exactly `names` needs."""
    return HEADER_BYTES_FOR_METADATA + sum(len(n.encode()) + HEADER_BYTES_PER_TENSOR for n in names)


def read_header(
    blob: bytes, names: Collection[str] | None, *, limit: int | None = None
) -> dict[str, str]:
    """Check an untrusted safetensors header against the tensor `names` a blob must hold;
    return its metadata.

    Checked before anything is parsed at length: the header's declared length against the
    blob and against what `names` need; then (a few KB at most) the JSON, with repeated keys
    rejected rather than "last one wins"; the tensor names; each entry's dtype, shape and
    offsets, which must tile the data buffer exactly. `limit` overrides the header's bound
    (by default what `names` need).
    """
    if len(blob) < 8:
        raise _bad(f"{len(blob)} bytes: too short for safetensors")
    n = int.from_bytes(bytes(blob[:8]), "little")
    if limit is None:
        limit = HEADER_BYTES_UNBOUNDED if names is None else header_bound(names)
    if n > len(blob) - 8:
        raise _bad(f"header of {n} bytes in a {len(blob)}-byte blob")
    if n > limit:
        raise _bad(f"header of {n} bytes; this job's update needs at most {limit}")
    header = _parse_header(bytes(blob[8 : 8 + n]))
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _bad("__metadata__ must map strings to strings")
    if names is not None and set(header) != set(names):
        raise UpdateRejected(Reason.WRONG_SHAPE, _name_difference(set(names), set(header)))
    _check_layout(header, len(blob) - 8 - n)
    return dict(meta)


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw, object_pairs_hook=_unique_keys)
    except UpdateRejected:
        raise
    except (ValueError, RecursionError) as exc:
        raise _bad(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _bad("header is not a JSON object")
    return header


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:  # "last one wins" would let two parsers read two different blobs
            raise _bad(f"header repeats the key {key[:64]!r}")
        out[key] = value
    return out


def _name_difference(expected: set[str], got: set[str]) -> str:
    missing, extra = sorted(expected - got), sorted(got - expected)
    parts = [f"missing tensors {missing[:5]}"] if missing else []
    parts += [f"unexpected tensors {[e[:64] for e in extra[:5]]}"] if extra else []
    return "; ".join(parts)


def _check_layout(header: Mapping[str, Any], buffer_bytes: int) -> None:
    """Each entry well formed, and the entries' byte ranges tiling the data buffer."""
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _bad(f"tensor {name[:64]!r}: malformed entry")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPES:
            raise _bad(f"tensor {name[:64]!r}: unknown dtype {str(dtype)[:16]!r}")
        if not _ints(shape) or not _ints(offsets) or len(offsets) != 2 or len(shape) > 8:
            raise _bad(f"tensor {name[:64]!r}: bad shape/offsets")
        begin, end = offsets
        if math.prod(shape) * _DTYPE_BYTES[dtype] != end - begin:
            raise _bad(f"tensor {name[:64]!r}: size != its shape")
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise _bad("tensor data overlaps or leaves gaps")
        position = end
    if position != buffer_bytes:
        raise _bad(f"tensors cover {position} bytes of a {buffer_bytes}-byte buffer")


def _ints(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    )


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


def _bad(detail: str) -> UpdateRejected:
    return UpdateRejected(Reason.UNDECODABLE, f"not a valid safetensors blob ({detail})")
