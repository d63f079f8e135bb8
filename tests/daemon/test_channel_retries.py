"""How often a channel's bucket tries a request, counted on the wire.

Each test runs a small HTTP "store" on loopback that misbehaves on purpose (closes every
connection at once, or cuts GET bodies short) and counts the requests it receives, so a
retry layer stacked on another (botocore's inside ours) would show up as extra requests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

from kachery_daemon.channels.bucket import ATTEMPTS, BLOCK, ChannelBucket, ChannelUnreachable
from kachery_daemon.channels.config import ChannelConfig

DATA = bytes(range(256)) * 4096  # 1 MiB


class MisbehavingStore:
    """A loopback HTTP server. `mode`: "close" drops every connection unanswered;
    "cut" answers HEAD properly and sends the first `cut_requests` GETs only half their
    bytes before closing (the rest whole)."""

    def __init__(self, mode: str, cut_requests: int = 1_000_000) -> None:
        self.mode = mode
        self.cut_requests = cut_requests
        self.connections = 0
        self.gets: List[str] = []
        """The Range header of each GET, in order."""
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                if self.mode == "close":
                    continue
                conn.settimeout(10)
                with contextlib.suppress(OSError):
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            data = conn.recv(65536)
            if not data:
                return
            request += data
        lines = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method = lines[0].split(" ", 1)[0]
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
        if method == "HEAD":
            conn.sendall(
                f'HTTP/1.1 200 OK\r\nContent-Length: {len(DATA)}\r\nETag: "e"\r\n'
                "Connection: close\r\n\r\n".encode()
            )
            return
        self.gets.append(headers.get("range", ""))
        start, end = 0, len(DATA) - 1
        if "range" in headers:
            first, last = headers["range"].split("=", 1)[1].split("-")
            start, end = int(first), int(last) if last else len(DATA) - 1
        body = DATA[start : end + 1]
        conn.sendall(
            f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(body)}\r\n"
            f'Content-Range: bytes {start}-{end}/{len(DATA)}\r\nETag: "e"\r\n'
            "Connection: close\r\n\r\n".encode()
        )
        if len(self.gets) <= self.cut_requests:
            body = body[: len(body) // 2]
        conn.sendall(body)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.listener.close()
        self._thread.join(timeout=10)


StoreAndBucket = Callable[..., Tuple[MisbehavingStore, ChannelBucket]]


@pytest.fixture
def store_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[StoreAndBucket]:
    """A factory: (store) -> a ChannelBucket pointing at it; every store is closed after."""
    pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    stores: List[MisbehavingStore] = []

    def make(mode: str, cut_requests: int = 1_000_000) -> Tuple[MisbehavingStore, ChannelBucket]:
        store = MisbehavingStore(mode, cut_requests)
        stores.append(store)
        channel = ChannelConfig(
            name="lab",
            bucket="kachery-test",
            endpoint_url=f"http://127.0.0.1:{store.port}",
            region="us-east-1",
            source="test.toml",
        )
        return store, ChannelBucket(channel)

    yield make
    for store in stores:
        store.close()


def _error_of(call: Callable[[], object]) -> ChannelUnreachable:
    with pytest.raises(ChannelUnreachable) as caught:
        call()
    return caught.value


def test_an_unreachable_store_gets_exactly_attempts_requests(store_bucket: StoreAndBucket) -> None:
    store, bucket = store_bucket("close")
    for name, call in (
        ("head", lambda: bucket.head("k")),
        ("get", lambda: bucket.get_small("k")),
        ("put", lambda: bucket.put_bytes("k", b"x")),
        ("list", lambda: bucket.list_keys("p/")),
    ):
        before = store.connections
        error = _error_of(call)
        assert store.connections - before == ATTEMPTS, name
        assert f"tried {ATTEMPTS} times" in (error.hint or ""), (name, error.hint)
        assert "cannot reach the store of channel 'lab'" in error.message


def test_a_cut_download_resumes_where_it_stopped(store_bucket: StoreAndBucket) -> None:
    store, bucket = store_bucket("cut", cut_requests=1)
    start, end = 1000, 1000 + 200_000
    received = b"".join(bucket.iter_range("k", start, end))
    assert received == DATA[start:end]  # every byte once, in order
    assert store.gets == [f"bytes={start}-{end - 1}", f"bytes={start + 100_000}-{end - 1}"]


def test_a_download_cut_every_time_gives_up_after_attempts_requests(
    store_bucket: StoreAndBucket,
) -> None:
    store, bucket = store_bucket("cut")
    received: List[bytes] = []
    error: Optional[ChannelUnreachable] = None
    try:
        for block in bucket.iter_range("k", 0, len(DATA)):
            received.append(block)
    except ChannelUnreachable as exc:
        error = exc
    assert error is not None
    assert len(store.gets) == ATTEMPTS
    assert f"tried {ATTEMPTS} times" in (error.hint or "")
    assert b"".join(received) == DATA[: len(b"".join(received))]  # a true prefix, no repeats


def test_a_download_arrives_in_blocks_of_at_most_block_bytes(store_bucket: StoreAndBucket) -> None:
    """The memory a chunk thread holds is one block: a 1 MiB body comes as several blocks
    of at most BLOCK bytes, and BLOCK stays small (with 1 MiB blocks a downloading node
    peaked ~20 MiB higher, in glibc's per-thread arenas: see bucket.BLOCK)."""
    assert BLOCK <= 256 << 10
    store, bucket = store_bucket("cut", cut_requests=0)
    blocks = list(bucket.iter_range("k", 0, len(DATA)))
    assert b"".join(blocks) == DATA
    assert len(blocks) >= len(DATA) // BLOCK
    assert max(len(block) for block in blocks) <= BLOCK
    assert store.gets == [f"bytes=0-{len(DATA) - 1}"]
