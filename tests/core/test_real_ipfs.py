"""The storage adapter against a real IPFS daemon (Kubo RPC API; js-ipfs from npm here)."""

from __future__ import annotations

import time

import pytest

from backend.core.errors import ContentMismatch, StorageUnavailable
from backend.devtools.devnet import IpfsDaemon, find_ipfs
from backend.devtools.devnode import free_port
from backend.storage import IpfsStore, fetch_verified, sha256_bytes

pytestmark = pytest.mark.skipif(
    find_ipfs() is None, reason="IPFS daemon not installed (scripts/install_devnet.sh)"
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = IpfsDaemon(
        tmp_path_factory.mktemp("ipfs") / "repo",
        api_port=free_port(),
        swarm_port=free_port(),
        gateway_port=free_port(),
        grpc_port=free_port(),
    )
    d.start(log=tmp_path_factory.mktemp("log") / "ipfs.log")
    yield d
    d.stop()


def test_put_get_verified_and_pinned(daemon: IpfsDaemon) -> None:
    store = IpfsStore(daemon.api, retries=1)
    blob = bytes(range(256)) * 8192  # 2 MiB: chunked by the daemon
    cid = store.put(blob)
    assert fetch_verified(store, cid, sha256_bytes(blob)) == blob
    with pytest.raises(ContentMismatch):
        fetch_verified(store, cid, sha256_bytes(b"something else"))
    import ipfshttpclient

    client = ipfshttpclient.connect(daemon.api)
    pins = client.pin.ls(type="recursive")["Keys"]
    assert cid in pins


def test_transfers_report_progress_as_the_bytes_move(daemon: IpfsDaemon) -> None:
    """The upload body is streamed chunk by chunk and the download read as a stream, so the
    progress bars follow the transfer (not just its end), and the content is unchanged."""
    store = IpfsStore(daemon.api, retries=1)
    blob = bytes(range(251)) * 4096  # ~1 MiB: four 256 KiB chunks
    up: list[tuple[int, int | None]] = []
    cid = store.put(blob, lambda done, total: up.append((done, total)))
    assert len(up) == 4 and up[-1] == (len(blob), len(blob))
    assert [d for d, _ in up] == sorted(d for d, _ in up)
    down: list[tuple[int, int | None]] = []
    got = fetch_verified(
        store, cid, sha256_bytes(blob), lambda done, total: down.append((done, total))
    )
    assert got == blob and down[-1][0] == len(blob) and len(down) >= 2
    assert cid == store.put(blob)  # same CID with or without progress


def test_daemon_stopped_briefly_then_back_retries(daemon: IpfsDaemon) -> None:
    store = IpfsStore(daemon.api, retries=1, backoff_s=0.05, timeout_s=2)
    cid = store.put(b"survives a restart")
    daemon.stop()
    t0 = time.monotonic()
    with pytest.raises(StorageUnavailable, match="unreachable"):
        store.get(cid)
    assert time.monotonic() - t0 < 15
    daemon.start()
    assert store.get(cid) == b"survives a restart"
