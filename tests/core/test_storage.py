from __future__ import annotations

import time

import pytest

from backend.core.errors import ContentMismatch, ContentNotFound, StorageUnavailable
from backend.storage import IpfsStore, LocalStore, fetch_verified, raw_cid, sha256_bytes


def test_local_store_round_trip_and_cid_is_content_address(store: LocalStore) -> None:
    cid = store.put(b"hello")
    assert cid == raw_cid(b"hello")
    assert cid.startswith("bafkrei")  # CIDv1, raw codec, sha2-256, base32
    assert store.get(cid) == b"hello"
    assert store.put(b"hello") == cid  # idempotent
    assert store.has(cid) and not store.has(raw_cid(b"other"))


def test_known_cid_vector() -> None:
    # `ipfs add --cid-version 1 --raw-leaves` of the empty file gives this CID.
    assert raw_cid(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_missing_content_is_a_clear_error(store: LocalStore) -> None:
    with pytest.raises(ContentNotFound, match="not in the local store"):
        store.get(raw_cid(b"never stored"))
    with pytest.raises(ContentNotFound, match="not a content identifier"):
        store.get("../etc/passwd")


def test_fetch_verified_rejects_tampered_content(store: LocalStore) -> None:
    cid = store.put(b"model bytes")
    assert fetch_verified(store, cid, sha256_bytes(b"model bytes")) == b"model bytes"
    (store.blobs / cid).write_bytes(b"tampered")
    with pytest.raises(ContentMismatch, match="was announced"):
        fetch_verified(store, cid, sha256_bytes(b"model bytes"))


def test_no_partial_files_left_behind(store: LocalStore) -> None:
    for i in range(5):
        store.put(bytes([i]) * 1000)
    assert not [p for p in store.blobs.iterdir() if p.name.startswith(".tmp-")]


def test_local_transfers_report_progress(store: LocalStore) -> None:
    blob = b"x" * (600 * 1024)  # three chunks
    up: list[tuple[int, int | None]] = []
    cid = store.put(blob, lambda done, total: up.append((done, total)))
    assert up == [(256 * 1024, len(blob)), (512 * 1024, len(blob)), (len(blob), len(blob))]
    down: list[tuple[int, int | None]] = []
    assert store.get(cid, lambda done, total: down.append((done, total))) == blob
    assert down == up
    again: list[tuple[int, int | None]] = []
    store.put(blob, lambda done, total: again.append((done, total)))  # already stored
    assert again == [(len(blob), len(blob))]


def test_dead_ipfs_daemon_reports_clearly_after_retries() -> None:
    dead = IpfsStore("/ip4/127.0.0.1/tcp/1", retries=2, backoff_s=0.01, timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(StorageUnavailable, match=r"unreachable .* after 3 attempts"):
        dead.put(b"x")
    assert time.monotonic() - t0 < 10


def test_open_store_picks_backend(tmp_path) -> None:
    from backend.storage import open_store

    assert isinstance(open_store(None, tmp_path), LocalStore)
    assert isinstance(open_store("/ip4/127.0.0.1/tcp/5001", tmp_path), IpfsStore)
