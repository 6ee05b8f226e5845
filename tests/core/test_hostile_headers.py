"""Hostile safetensors headers cost nothing: any blob up to the job's size limit is accepted or
rejected in well under a second and a few MB, whatever its header claims.

Before the bound, a 64 MiB blob whose header listed ~1.2M empty tensors took 35 s and +2 GB
to reject (safetensors parsed and built every entry)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from backend.core import codec as st_codec
from backend.core.compression import decode_update, encode_update
from backend.core.errors import Reason, UpdateRejected
from backend.core.models import ModelSpec, template_of

LIMIT = 64 * 1024 * 1024
TEMPLATE = template_of(ModelSpec(family="mlp", input_dim=64, hidden=[64, 64]))


def blob_of(header: str | bytes, buffer: bytes = b"") -> bytes:
    raw = header.encode() if isinstance(header, str) else header
    return len(raw).to_bytes(8, "little") + raw + buffer


def many_empty_tensors(size: int) -> bytes:
    """A `size`-byte blob whose header lists as many empty tensors as fit."""
    entry = '"t{:07d}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
    count = (size - 8) // (len(entry.format(0)) + 1)
    header = "{" + ",".join(entry.format(i) for i in range(count)) + "}"
    return blob_of(header + " " * (size - 8 - len(header)))


def test_a_million_empty_tensors_at_the_size_limit_is_cheap_to_reject(tmp_path: Path) -> None:
    """Measured in a fresh process: wall time and peak-RSS growth of the decode alone."""
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(many_empty_tensors(LIMIT))
    probe = textwrap.dedent(
        f"""
        import json, resource, sys, time
        from pathlib import Path
        from backend.core.compression import decode_update
        from backend.core.errors import UpdateRejected
        from backend.core.models import ModelSpec, template_of
        template = template_of(ModelSpec(family="mlp", input_dim=64, hidden=[64, 64]))
        blob = Path({str(path)!r}).read_bytes()
        out = {{}}
        for codec in ("fp32", "int8", "topk"):
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            try:
                decode_update(blob, template, codec, {LIMIT})
                out[codec] = "accepted"
            except UpdateRejected as exc:
                out[codec] = [time.perf_counter() - start, int(exc.reason),
                    (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024]
        print(json.dumps(out))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for codec, (seconds, reason, extra_mb) in results.items():
        assert reason == Reason.UNDECODABLE, codec
        assert seconds < 1.0 and extra_mb < 50, (codec, seconds, extra_mb)


def test_the_header_bound_comes_from_the_template() -> None:
    hostile = many_empty_tensors(4 * 1024 * 1024)
    with pytest.raises(
        UpdateRejected, match=r"header of \d+ bytes; this job's update needs at most"
    ):
        st_codec.decode(hostile, TEMPLATE)
    assert st_codec.header_bound(TEMPLATE.names) < 4096  # a few KB for this model


@pytest.mark.parametrize("codec", ["fp32", "int8", "topk"])
def test_a_repeated_header_key_is_rejected_not_last_one_wins(codec: str) -> None:
    update = TEMPLATE.unflatten(np.random.default_rng(0).normal(0, 0.01, TEMPLATE.size))
    blob, _ = encode_update(update, TEMPLATE, codec)
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    entry = json.dumps(header[name], separators=(",", ":"))
    # the same key twice: safetensors' parser would keep the second one
    raw = blob[8 : 8 + n].decode().rstrip()
    doubled = raw[:-1] + f',"{name}":{entry}' + "}"
    with pytest.raises(UpdateRejected, match="repeats the key") as info:
        decode_update(blob_of(doubled, blob[8 + n :]), TEMPLATE, codec)
    assert info.value.reason == Reason.UNDECODABLE
    meta = raw[:-1] + ',"__metadata__":{"codec":"' + codec + '"}}'
    with pytest.raises(UpdateRejected, match="repeats the key"):
        decode_update(blob_of(meta, blob[8 + n :]), TEMPLATE, codec)


@pytest.mark.parametrize(
    ("header", "buffer", "words"),
    [
        (b"", b"", "not JSON"),
        ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"", "cover 4 bytes of a 0"),
        ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', b"abcd", "size != its shape"),
        ('{"a":{"dtype":"X9","shape":[1],"data_offsets":[0,4]}}', b"abcd", "dtype"),
        ('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', b"abcd", "shape/offsets"),
        ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}', b"abcd", "malformed"),
        ('{"__metadata__":{"codec":7}}', b"", "strings to strings"),
        ("[" * 2000 + "]" * 2000, b"", "not a JSON object"),
        ('{"a":' * 500 + "1" + "}" * 500, b"", "malformed"),
    ],
)
def test_malformed_headers_are_undecodable(header: str | bytes, buffer: bytes, words: str) -> None:
    with pytest.raises(UpdateRejected, match=words) as info:
        st_codec.read_header(blob_of(header, buffer), None)
    assert info.value.reason == Reason.UNDECODABLE


def test_header_length_beyond_the_blob() -> None:
    blob = (10**12).to_bytes(8, "little") + b"{}"
    with pytest.raises(UpdateRejected, match="header of 1000000000000 bytes in a 10-byte blob"):
        decode_update(blob, TEMPLATE, "fp32")


def test_honest_updates_at_the_size_limit_are_accepted() -> None:
    """The bound rejects no honest blob: a model whose int8 update is exactly the limit."""
    update = TEMPLATE.unflatten(np.random.default_rng(1).normal(0, 0.01, TEMPLATE.size))
    for codec in ("fp32", "int8", "topk"):
        blob, _ = encode_update(update, TEMPLATE, codec)
        out = decode_update(blob, TEMPLATE, codec, max_bytes=len(blob))
        assert list(out) == list(TEMPLATE.names)
        with pytest.raises(UpdateRejected) as info:
            decode_update(blob, TEMPLATE, codec, max_bytes=len(blob) - 1)
        assert info.value.reason == Reason.TOO_LARGE
