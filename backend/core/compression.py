"""Pseudo-gradient compression chosen by the job: fp32 (none), int8, or top-k with error feedback.

Every blob is safetensors (never pickle) whose metadata names its codec:

- ``fp32``: the tensors as float32, one safetensors tensor per model tensor.
- ``int8``: one int8 vector ``q`` (all tensors, template order) and a float32 vector ``s`` of
  per-tensor scales: ``x ≈ q * s[t]``, ``s[t] = max|x_t| / 127``.
- ``topk``: the ``k = ceil(fraction * size)`` largest-magnitude entries of the flattened update:
  ``q`` (their int8 values, in index order), ``s`` (one float32 scale) and ``i`` (their flat
  indices as a Rice-coded byte stream, metadata ``rice`` = the parameter ``b``). The gaps between
  ascending indices are geometric-ish, so each costs ``b + 1 + (gap >> b)`` bits: about 5 bits at
  8% density instead of 16 for a uint16 index (as in sparse ternary compression, Sattler et al.
  2019). The stream is the ``k`` remainders (``b`` bits each, MSB first, zero-padded to a byte),
  then the ``k`` quotients in unary (``gap >> b`` zero bits closed by a one bit, zero-padded).

The trainer keeps what it did not send (the residual) and adds it to the next round's update
(error feedback), so nothing is lost for good, only delayed.

`decode_update` treats the blob as hostile: size, codec, names, dtypes, shapes, index range and
order, finiteness — and raises UpdateRejected with the on-chain reason code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from safetensors.numpy import save as st_save

from backend.core import codec as st_codec
from backend.core.codec import Template, Tensors
from backend.core.errors import Reason, UpdateRejected

CODECS = ("fp32", "int8", "topk")
DEFAULT_TOPK_FRACTION = 0.08


def _check_codec(name: str) -> None:
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; use one of {', '.join(CODECS)}")


def _quantize(v: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric int8 with one scale; round to nearest (error ≤ scale / 2 per entry)."""
    peak = float(np.max(np.abs(v))) if v.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    q = np.clip(np.rint(v / scale), -127, 127).astype(np.int8)
    return q, scale


def topk_count(size: int, fraction: float) -> int:
    if not 0 < fraction <= 1:
        raise ValueError(f"topk_fraction must be in (0, 1]; got {fraction}")
    return max(1, min(size, math.ceil(fraction * size)))


def encode_update(
    tensors: Mapping[str, np.ndarray],
    template: Template,
    codec: str,
    *,
    topk_fraction: float = DEFAULT_TOPK_FRACTION,
    residual: Mapping[str, np.ndarray] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> tuple[bytes, Tensors]:
    """Encode an update (plus the carried residual); return (blob, new residual).

    `metadata` joins the codec's own in the blob's header (a privacy claim,
    `backend.core.privacy`): the content hash commits to it.

    The new residual is what the receiver will not see: (update + residual) − decoded. For
    fp32 it is zero; for int8 the rounding error; for top-k everything not sent.

    `template` is the job's model template: int8 and top-k pack every tensor into one vector,
    so sender and receiver must agree on the order. It comes from the model, never from the
    order of `tensors` (weights decoded from a blob arrive in the blob's order).
    """
    _check_codec(codec)
    extra = dict(metadata or {})
    full = template.flatten(tensors, np.float64)
    if residual is not None:
        full = full + template.flatten(residual, np.float64)
    full32 = full.astype(np.float32)
    if codec == "fp32":
        blob = st_codec.encode(template.unflatten(full32), {"codec": "fp32", **extra})
        sent = full32.astype(np.float64)
    elif codec == "int8":
        qs, scales, sent_parts = [], [], []
        offset = 0
        for shape in template.shapes:
            n = int(np.prod(shape))
            part = full32[offset : offset + n]
            q, scale = _quantize(part)
            qs.append(q)
            scales.append(scale)
            sent_parts.append(q.astype(np.float64) * np.float32(scale))
            offset += n
        q_all = np.concatenate(qs) if qs else np.zeros(0, np.int8)
        s_all = np.asarray(scales, dtype=np.float32)
        blob = st_save({"q": q_all, "s": s_all}, metadata={"codec": "int8", **extra})
        sent = np.concatenate(sent_parts) if sent_parts else np.zeros(0)
    else:
        k = topk_count(template.size, topk_fraction)
        idx = np.sort(np.argpartition(-np.abs(full32), k - 1)[:k])
        q, scale = _quantize(full32[idx])
        stream, b = rice_encode(idx)
        blob = st_save(
            {"i": stream, "q": q, "s": np.asarray([scale], np.float32)},
            metadata={"codec": "topk", "rice": str(b), **extra},
        )
        sent = np.zeros(template.size)
        sent[idx] = q.astype(np.float64) * np.float32(scale)
    new_residual = template.unflatten((full - sent).astype(np.float32))
    return blob, new_residual


def _reject(reason: Reason, detail: str) -> UpdateRejected:
    return UpdateRejected(reason, detail)


MAX_RICE_BITS = 40


def rice_encode(idx: np.ndarray) -> tuple[np.ndarray, int]:
    """Rice-code strictly increasing indices; return (uint8 stream, parameter b).

    b is chosen exactly: the one minimising the stream's total bits, k·(b+1) + Σ(gap >> b).
    """
    idx = np.asarray(idx, np.int64)
    gaps = np.diff(idx, prepend=-1) - 1
    if idx.size == 0:
        return np.zeros(0, np.uint8), 0
    top = int(gaps.max()).bit_length()
    costs = [idx.size * (b + 1) + int((gaps >> b).sum()) for b in range(top + 1)]
    b = int(np.argmin(costs))
    if b:
        bits = (gaps[:, None] >> np.arange(b - 1, -1, -1)) & 1
        remainders = np.packbits(bits.astype(np.uint8).ravel())
    else:
        remainders = np.zeros(0, np.uint8)
    quotients = gaps >> b
    ones_at = np.cumsum(quotients + 1) - 1  # the closing one bit of each unary code
    unary = np.zeros(int(ones_at[-1]) + 1, np.uint8)
    unary[ones_at] = 1
    return np.concatenate([remainders, np.packbits(unary)]), b


def rice_decode(stream: np.ndarray, k: int, b: int, size: int) -> np.ndarray:
    """The k strictly increasing indices in [0, size) coded in `stream`, or UpdateRejected.

    Hostile input is bounded before anything is expanded: the unary part may hold at most
    k + (size >> b) bits, since the gaps of k distinct indices below `size` sum to < size. Only
    the canonical stream is accepted (no extra bytes, zero padding), so one index set has
    exactly one encoding.
    """
    if not 0 <= b <= MAX_RICE_BITS:
        raise _reject(Reason.UNDECODABLE, f"Rice parameter {b} out of range 0..{MAX_RICE_BITS}")
    if k > size:
        raise _reject(Reason.WRONG_SHAPE, f"{k} indices for {size} parameters")
    if k == 0:
        if stream.size:
            raise _reject(Reason.WRONG_SHAPE, "an index stream with no values")
        return np.zeros(0, np.int64)
    rem_bytes = -(-k * b // 8)
    unary_bytes = stream.size - rem_bytes
    if unary_bytes < 1 or unary_bytes > -(-(k + (size >> b)) // 8):
        raise _reject(
            Reason.WRONG_SHAPE,
            f"index stream of {stream.size} bytes cannot hold {k} indices below {size} (b={b})",
        )
    remainders = np.zeros(k, np.int64)
    if b:
        rbits = np.unpackbits(stream[:rem_bytes])
        if rbits[k * b :].any():
            raise _reject(Reason.WRONG_SHAPE, "index stream: nonzero padding after remainders")
        weights = np.left_shift(np.int64(1), np.arange(b - 1, -1, -1, dtype=np.int64))
        remainders = rbits[: k * b].reshape(k, b).astype(np.int64) @ weights
    ones_at = np.flatnonzero(np.unpackbits(stream[rem_bytes:]))
    if ones_at.size != k or int(ones_at[-1]) // 8 != unary_bytes - 1:
        raise _reject(
            Reason.WRONG_SHAPE,
            f"index stream holds {ones_at.size} unary codes (or trailing bytes); expected {k}",
        )
    quotients = np.diff(ones_at, prepend=-1) - 1
    idx = np.cumsum((quotients << b) + remainders + 1) - 1
    if int(idx[-1]) >= size:
        raise _reject(Reason.WRONG_SHAPE, f"index {int(idx[-1])} out of range 0..{size - 1}")
    return idx


#: The tensors of a packed update, by codec (fp32 sends the model's own tensors).
_PACKED_NAMES = {"int8": ("q", "s"), "topk": ("i", "q", "s")}


def _expect(arrays: Mapping[str, np.ndarray], names: set[str], codec: str) -> None:
    if set(arrays) != names:
        raise _reject(
            Reason.WRONG_SHAPE,
            f"a {codec} update holds tensors {sorted(names)}; got {sorted(arrays)[:6]}",
        )


def decode_update(
    blob: bytes, template: Template, codec: str, max_bytes: int | None = None
) -> Tensors:
    """Decode an untrusted update blob encoded with `codec` into float32 tensors.

    Raises UpdateRejected: TOO_LARGE, UNDECODABLE (not safetensors, or another codec),
    WRONG_SHAPE (names, dtypes, shapes, index range/order) or NON_FINITE.
    """
    return decode_update_with_metadata(blob, template, codec, max_bytes)[0]


def decode_update_with_metadata(
    blob: bytes, template: Template, codec: str, max_bytes: int | None = None
) -> tuple[Tensors, dict[str, str]]:
    """`decode_update`, plus the blob's (bounded, string-to-string) header metadata."""
    _check_codec(codec)
    if max_bytes is not None and len(blob) > max_bytes:
        raise _reject(
            Reason.TOO_LARGE, f"{len(blob)} bytes is above the job's limit of {max_bytes} bytes"
        )
    # One bound for every codec's header: the model's names or the packed vectors'.
    bound = st_codec.header_bound([*template.names, *_PACKED_NAMES["topk"]])
    meta = st_codec.read_header(blob, None, limit=bound)
    declared = meta.get("codec")
    if codec == "fp32":
        if declared not in (None, "fp32"):
            raise _reject(Reason.UNDECODABLE, f"blob is {declared}-encoded; the job uses fp32")
        return st_codec.decode(blob, template), meta  # names, shapes, dtype, finiteness
    if declared != codec:
        raise _reject(Reason.UNDECODABLE, f"blob declares codec {declared!r}; the job uses {codec}")
    st_codec.read_header(blob, _PACKED_NAMES[codec])
    arrays = st_codec.load_checked(blob)
    size = template.size
    if codec == "int8":
        _expect(arrays, {"q", "s"}, codec)
        q, s = arrays["q"], arrays["s"]
        if q.dtype != np.int8 or q.shape != (size,):
            raise _reject(
                Reason.WRONG_SHAPE, f"q is {q.dtype}{list(q.shape)}, expected int8[{size}]"
            )
        n_t = len(template.shapes)
        if s.dtype != np.float32 or s.shape != (n_t,):
            raise _reject(
                Reason.WRONG_SHAPE, f"s is {s.dtype}{list(s.shape)}, expected float32[{n_t}]"
            )
        if not np.isfinite(s).all():
            raise _reject(Reason.NON_FINITE, "a per-tensor scale is NaN or Inf")
        counts = [int(np.prod(shape)) for shape in template.shapes]
        with np.errstate(over="ignore", invalid="ignore"):
            flat = q.astype(np.float32) * np.repeat(s, counts)
    else:
        _expect(arrays, {"i", "q", "s"}, codec)
        i, q, s = arrays["i"], arrays["q"], arrays["s"]
        if i.dtype != np.uint8 or i.ndim != 1:
            raise _reject(
                Reason.WRONG_SHAPE, f"i is {i.dtype}{list(i.shape)}, expected a uint8 stream"
            )
        if q.dtype != np.int8 or q.ndim != 1:
            raise _reject(Reason.WRONG_SHAPE, f"q is {q.dtype}{list(q.shape)}, expected int8 1-D")
        if s.dtype != np.float32 or s.shape != (1,):
            raise _reject(Reason.WRONG_SHAPE, f"s is {s.dtype}{list(s.shape)}, expected float32[1]")
        if not np.isfinite(s).all():
            raise _reject(Reason.NON_FINITE, "the scale is NaN or Inf")
        b = meta.get("rice", "")
        if not (b.isascii() and b.isdigit()):
            raise _reject(
                Reason.UNDECODABLE, f"a topk update needs metadata rice=<bits>; got {b!r}"
            )
        idx = rice_decode(i, int(q.size), int(b), size)
        flat = np.zeros(size, np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            flat[idx] = q.astype(np.float32) * s[0]
    if not np.isfinite(flat).all():
        raise _reject(Reason.NON_FINITE, "decoded values overflow to Inf")
    return template.unflatten(flat, np.float32), meta


def zeros_like(template: Template) -> Tensors:
    return template.unflatten(np.zeros(template.size, np.float32))


def save_residual(path, residual: Mapping[str, np.ndarray]) -> None:
    """Persist a trainer's residual as safetensors (atomic replace)."""
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(st_codec.encode(residual, {"kind": "residual"}))
    os.replace(tmp, path)


def load_residual(path, template: Template) -> Tensors | None:
    """The residual saved at `path`, or None if there is none (or it no longer fits)."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return None
    try:
        return st_codec.decode(path.read_bytes(), template)
    except UpdateRejected:
        return None
