"""The gRPC port under attack, on a real node started with `--grpc-port`: idle TCP
connections against its connection cap and the shared open-file budget, connections with
no call, accept failures for lack of descriptors, upload streams that go silent, calls
whose request message never comes, and answers nobody reads (issue 18, items 2 and 7)."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import grpc
import requests
from conftest import free_port
from node_fixtures import NodeProcess

from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc
from kachery_core.grpc_api.tuning import CLIENT_CHANNEL_OPTIONS
from kachery_core.protocol.wire import AUTH_METADATA
from kachery_core.store.layout import StorageLayout

OPEN_FILES = 256
"""The node's open-file limit in these tests, as under `ulimit -n 256`."""
FLOOD = 400
"""Idle connections opened at once: more than the node may have descriptors."""
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""The client connection preface and an empty SETTINGS frame: a finished handshake."""


@contextlib.contextmanager
def open_file_limit(limit: int) -> Iterator[None]:
    """Processes started inside have at most `limit` open files (this one gets its own back)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def start_grpc_node(make_node, *args: str, limit: Optional[int] = None) -> NodeProcess:
    port = free_port()
    with open_file_limit(limit) if limit else contextlib.nullcontext():
        node = make_node("--grpc-port", str(port), "--auth-rotate-seconds", "300", *args)
    node.grpc_port = port  # type: ignore[attr-defined]
    return node


def open_fds(node: NodeProcess) -> int:
    return len(os.listdir(f"/proc/{node.pid}/fd"))


def grpc_probe(node: NodeProcess, timeout: float = 2.0) -> Optional[str]:
    """The node ID answered by gRPC Probe on a fresh channel, or None."""
    channel = grpc.insecure_channel(f"127.0.0.1:{node.grpc_port}")  # type: ignore[attr-defined]
    try:
        return pb_grpc.KacheryStub(channel).Probe(pb.ProbeRequest(), timeout=timeout).node_id
    except grpc.RpcError:
        return None
    finally:
        channel.close()


def http_probe_ok(node: NodeProcess, timeout: float = 2.0) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(node.url + "/probe", timeout=timeout).status_code == 200
    return False


def flood(port: int, count: int, first_bytes: bytes = b"") -> List[socket.socket]:
    """`count` connections to `port` that send `first_bytes`, then nothing."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if first_bytes:
                sock.sendall(first_bytes)
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def closed_by_node(sock: socket.socket, wait: float) -> bool:
    """Whether the node closes `sock` within `wait` s (what it sends first is skipped)."""
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def log_lines(node: NodeProcess, text: str) -> int:
    return node.log.read_text(errors="replace").count(text)


# -- item 2: a cap on gRPC connections, inside the open-file budget --------------------------


def test_idle_grpc_connections_leave_http_and_grpc_answering(make_node) -> None:
    node = start_grpc_node(make_node, "--header-timeout", "4", limit=OPEN_FILES)
    log_before = node.log.stat().st_size
    idle = flood(node.grpc_port, FLOOD)  # type: ignore[attr-defined]
    try:
        flooded = time.monotonic()
        # the gRPC cap leaves room: HTTP answers at once, the node has descriptors to spare
        assert http_probe_ok(node), "HTTP /probe got no answer while gRPC connections were idle"
        assert open_fds(node) < OPEN_FILES - 64, open_fds(node)
        # beyond the cap, connections are closed as soon as they are accepted (well before
        # the handshake timeout)
        open_ones = list(idle)
        while len(open_ones) > OPEN_FILES // 4 and time.monotonic() < flooded + 3:
            open_ones = [sock for sock in open_ones if not closed_by_node(sock, 0.02)]
        assert len(open_ones) <= OPEN_FILES // 4, len(open_ones)
        # the ones the cap let in are closed by the handshake timeout: gRPC answers again
        answered = None
        while answered is None and time.monotonic() < flooded + 20:
            answered = grpc_probe(node)
        assert answered is not None, "gRPC Probe got no answer after the handshake timeout"
        assert all(closed_by_node(sock, 5) for sock in idle)
        assert http_probe_ok(node)
    finally:
        for sock in idle:
            sock.close()
    grown = node.log.stat().st_size - log_before
    assert grown < 4000 and log_lines(node, "Too many open files") == 0, grown


def test_grpc_connections_with_no_call_are_closed_after_the_keepalive_timeout(
    make_node,
) -> None:
    node = start_grpc_node(make_node, "--keepalive-timeout", "2", "--header-timeout", "30")
    idle = flood(node.grpc_port, 20, HTTP2_PREFACE)  # type: ignore[attr-defined]
    try:
        started = time.monotonic()
        assert all(closed_by_node(sock, 15) for sock in idle)
        assert time.monotonic() - started < 15
        assert grpc_probe(node) is not None
    finally:
        for sock in idle:
            sock.close()


def test_grpc_max_connections_caps_open_connections(make_node) -> None:
    node = start_grpc_node(make_node, "--grpc-max-connections", "5", "--header-timeout", "30")
    idle = flood(node.grpc_port, 25)  # type: ignore[attr-defined]
    try:
        open_ones, deadline = list(idle), time.monotonic() + 5
        while len(open_ones) > 5 and time.monotonic() < deadline:
            open_ones = [sock for sock in open_ones if not closed_by_node(sock, 0.05)]
        assert len(open_ones) == 5  # the rest were closed as soon as they were accepted
        assert not any(closed_by_node(sock, 0.2) for sock in open_ones)
        assert http_probe_ok(node)
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10  # the cap frees up as connections close
    while grpc_probe(node) is None:
        assert time.monotonic() < deadline, "gRPC did not answer once the idle ones closed"


def test_failed_accepts_are_logged_once_per_burst(make_node) -> None:
    """A node whose HTTP cap does not fit its open-file limit (given by hand): accepts fail
    with EMFILE, and the log says so in two lines, not a traceback per accept."""
    # A long header timeout: the node's small listen backlog paces the flood, so connections
    # must stay open until there are more of them than descriptors.
    node = start_grpc_node(
        make_node, "--max-connections", "1000", "--header-timeout", "60", limit=OPEN_FILES
    )
    log_before = node.log.stat().st_size
    idle: List[socket.socket] = []
    try:
        for _ in range(FLOOD):  # until the node, out of descriptors, stops taking them
            try:
                idle.append(socket.create_connection(("127.0.0.1", node.port), timeout=2))
            except OSError:
                break
        deadline = time.monotonic() + 10  # out of descriptors: accepts fail, many a second
        while log_lines(node, "cannot accept connections") == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 15  # the end of the burst is logged once it is over
    while log_lines(node, "accept failures stopped") == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    text = node.log.read_text(errors="replace")
    assert text.count("cannot accept connections on 127.0.0.1") == 1, text[-2000:]
    assert text.count("accept failures stopped") == 1, text[-2000:]
    assert "Traceback" not in text
    assert node.log.stat().st_size - log_before < 4000
    assert http_probe_ok(node)


# -- item 7: silent Store streams are ended --------------------------------------------------


class SilentUpload:
    """A Store call that sends `sends` pieces `pause` s apart, then nothing until released."""

    def __init__(self, stub: pb_grpc.KacheryStub, auth: str, sends: int, pause: float) -> None:
        self.released = threading.Event()
        self.sends, self.pause = sends, pause
        self.future = stub.Store.future(self._pieces(), metadata=((AUTH_METADATA, auth),))

    def _pieces(self) -> Iterator[pb.DataChunk]:
        for i in range(self.sends):
            if i:
                time.sleep(self.pause)
            yield pb.DataChunk(data=bytes([i]) * 300_000)
        self.released.wait(60)  # silent: the stream stays open, nothing more is sent

    def outcome(self, wait: float) -> Optional[grpc.RpcError]:
        """The call's error, None if it succeeded; TimeoutError if still open after `wait`."""
        try:
            self.future.result(timeout=wait)
            return None
        except grpc.FutureTimeoutError:
            raise TimeoutError("the silent Store stream was still open") from None
        except grpc.RpcError as exc:
            return exc


def staging_files(node: NodeProcess) -> List[Path]:
    temp = node.storage_dir / "tmp"
    return sorted(temp.iterdir()) if temp.is_dir() else []


def test_silent_store_streams_are_ended_and_their_staging_files_removed(make_node) -> None:
    node = start_grpc_node(make_node, "--body-idle-timeout", "2")
    channel = grpc.insecure_channel(f"127.0.0.1:{node.grpc_port}")  # type: ignore[attr-defined]
    uploads: List[SilentUpload] = []
    try:
        stub = pb_grpc.KacheryStub(channel)
        uploads = [SilentUpload(stub, node.auth_code(), 1, 0) for _ in range(10)]
        slow = SilentUpload(stub, node.auth_code(), 6, 0.5)  # slow but never silent for 2 s
        slow.released.set()
        time.sleep(1)
        assert len(staging_files(node)) >= 10  # each open upload holds a staging file
        started = time.monotonic()
        for upload in uploads:
            error = upload.outcome(wait=max(1.0, started + 20 - time.monotonic()))
            assert error is not None
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
            assert "no message for 2 s" in (error.details() or ""), error.details()
        assert time.monotonic() - started < 20
        assert slow.outcome(wait=20) is None  # 3 s in all, never 2 s without a message
        deadline = time.monotonic() + 5
        while staging_files(node) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert staging_files(node) == []
        assert grpc_probe(node) is not None
    finally:
        for upload in uploads:
            upload.released.set()
            upload.future.cancel()
        channel.close()


def test_calls_whose_request_message_never_comes_are_ended(make_node) -> None:
    """A unary call's headers with no message: grpc alone would wait for it forever."""
    node = start_grpc_node(make_node, "--body-idle-timeout", "2")
    channel = grpc.insecure_channel(f"127.0.0.1:{node.grpc_port}")  # type: ignore[attr-defined]
    released = threading.Event()

    def no_message() -> Iterator[bytes]:
        released.wait(60)
        yield from ()

    auth = ((AUTH_METADATA, node.auth_code()),)
    try:
        calls: List[grpc.Future] = [
            channel.stream_unary(f"/kachery.v1.Kachery/{name}").future(no_message(), metadata=auth)
            for name in ("Probe", "GetMutable", "WatchForNewMessages")
        ] + [
            channel.stream_stream(f"/kachery.v1.Kachery/{name}")(no_message(), metadata=auth)
            for name in ("Load", "ReadRange")
        ]
        started = time.monotonic()
        for call in calls:
            error = call.exception(timeout=max(1.0, started + 20 - time.monotonic()))
            assert isinstance(error, grpc.RpcError), "the call was still open"
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
            assert error.details() == "the request stalled: no message for 2 s", error
        assert time.monotonic() - started < 20
        assert grpc_probe(node) is not None
    finally:
        released.set()
        channel.close()


def _fds_on(node: NodeProcess, path: Path) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{node.pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{node.pid}/fd/{fd}") == str(path)
    return count


def test_answers_nobody_reads_end_the_call_and_close_the_file(make_node) -> None:
    node = start_grpc_node(make_node, "--body-idle-timeout", "2")
    data = os.urandom(40_000_000)
    sha1 = requests.post(node.url + "/store", data=data, headers=node.headers(), timeout=60)
    sha1.raise_for_status()
    path = StorageLayout(node.storage_dir).object_path(sha1.json()["sha1"])
    channel = grpc.insecure_channel(
        f"127.0.0.1:{node.grpc_port}",  # type: ignore[attr-defined]
        options=CLIENT_CHANNEL_OPTIONS,
    )
    try:
        stub = pb_grpc.KacheryStub(channel)
        auth = ((AUTH_METADATA, node.auth_code()),)
        loads = [stub.Load(pb.FileKey(sha1=sha1.json()["sha1"]), metadata=auth) for _ in range(3)]
        for load in loads:
            next(load)  # the first block came; the rest is never read
        time.sleep(0.5)
        assert _fds_on(node, path) == 3  # each load holds the object open
        deadline = time.monotonic() + 15
        while _fds_on(node, path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _fds_on(node, path) == 0, "the node still holds the object for unread loads"
        for load in loads:  # a client that reads on gets what was sent, then the status
            try:
                for _ in load:
                    pass
            except grpc.RpcError:
                pass
            assert load.code() == grpc.StatusCode.DEADLINE_EXCEEDED, load.details()
            assert load.details() == "the answer was not read: nothing could be sent for 2 s"
        whole = b"".join(
            c.data for c in stub.Load(pb.FileKey(sha1=sha1.json()["sha1"]), metadata=auth)
        )
        assert whole == data  # a load that is read goes through
    finally:
        channel.close()
