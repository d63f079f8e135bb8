"""The HTTP connection cap under attack, on real node processes: answers nobody reads,
half-sent heads under a low `ulimit -n`, and bodies trickled a byte a second must not
keep a fresh client's `/probe` from being answered (connection_guard.py, http_util.py)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import requests

from kachery_daemon.tokens import TokenStore

PROBE = b"GET /probe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def probe_status(node, timeout: float = 3.0) -> int:
    try:
        return requests.get(node.url + "/probe", timeout=timeout).status_code
    except requests.RequestException:
        return 0


def refused_at_the_cap(node) -> bool:
    """Whether a new connection gets the canned 503. Nothing is sent: the node answers
    before reading, and closing with a request unread would reset the connection and
    could lose the answer."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.settimeout(3)
        try:
            return sock.recv(65536).startswith(b"HTTP/1.1 503")
        except (socket.timeout, ConnectionResetError):
            return False


def wait_for_probe(node, seconds: float) -> float:
    """Seconds until `/probe` answers 200; fails after `seconds`."""
    started = time.monotonic()
    statuses = []
    while time.monotonic() - started < seconds:
        statuses.append(probe_status(node))
        if statuses[-1] == 200:
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"/probe not answered 200 within {seconds} s: {sorted(set(statuses))}")


def closed_by_node(sock: socket.socket, seconds: float = 10.0) -> bool:
    """Read (and drop) whatever the node sent, until it closed the connection."""
    sock.settimeout(seconds)
    try:
        while sock.recv(1 << 20):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def _node_ends(node, socks: List[socket.socket]) -> Dict[int, Tuple[str, str]]:
    """The node's end of each of our IPv4 connections, by our local port, from
    /proc/net/tcp: (state, socket inode). State 01 is ESTABLISHED; an end the node closed
    is FIN_WAIT or gone."""
    wanted = {sock.getsockname()[1] for sock in socks}
    ends: Dict[int, Tuple[str, str]] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(field.rsplit(":", 1)[1], 16) for field in fields[1:3])
        if local == node.port and remote in wanted:
            ends[remote] = (fields[3], fields[9])
    return ends


def all_closed_by_node(node, socks: List[socket.socket], seconds: float = 30.0) -> bool:
    """Whether the node closes every one of `socks` within `seconds`, seen from its end of
    each connection without reading ours: reading would let a node that has not yet timed
    out go on writing, and the connection would then stay open as an idle keep-alive.
    Then each is drained to the node's close."""
    ports = [sock.getsockname()[1] for sock in socks]
    deadline = time.monotonic() + seconds
    while True:
        ends = _node_ends(node, socks)
        if all(ends.get(port, ("gone", ""))[0] != "01" for port in ports):
            return all(closed_by_node(sock, 5.0) for sock in socks)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def accepted(node, socks: List[socket.socket]) -> int:
    """How many of `socks` the node process has accepted: the node's end of the connection
    (in /proc/net/tcp) is one of the sockets the process holds open (/proc/PID/fd)."""
    held = set()
    for fd in Path(f"/proc/{node.pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            link = os.readlink(fd)
            if link.startswith("socket:["):
                held.add(link[len("socket:[") : -1])
    return sum(inode in held for _state, inode in _node_ends(node, socks).values())


def wait_until_accepted(node, socks: List[socket.socket], seconds: float = 15.0) -> None:
    """Until the node has accepted every one of `socks` (a loaded machine may leave
    connections in the kernel's backlog for a while)."""
    deadline = time.monotonic() + seconds
    while accepted(node, socks) < len(socks):
        assert time.monotonic() < deadline, f"node accepted {accepted(node, socks)}/{len(socks)}"
        time.sleep(0.05)


def send_without_reading(sock: socket.socket, data: bytes, seconds: float = 3.0) -> int:
    """Send as much of `data` as the connection takes within `seconds`, never blocking on a
    peer that stopped reading."""
    sock.setblocking(False)
    sent, deadline = 0, time.monotonic() + seconds
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(data[sent:])
        except BlockingIOError:
            time.sleep(0.01)
    return sent


@contextlib.contextmanager
def open_file_limit(limit: int) -> Iterator[None]:
    """Processes started inside have `ulimit -n limit` (the soft limit is inherited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- item 1: answers nobody reads ------------------------------------------------------


def test_pipelined_answers_nobody_reads_do_not_hold_the_cap(make_node) -> None:
    cap = 10
    node = make_node("--max-connections", str(cap), "--write-timeout", "8")
    pipeline = PROBE * (320_000 // len(PROBE))  # about 320 KB of requests, no credential
    attackers: List[socket.socket] = []
    try:
        for _ in range(cap):
            sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            attackers.append(sock)
            assert send_without_reading(sock, pipeline) > 100_000
        wait_until_accepted(node, attackers)
        time.sleep(0.5)  # the node has read their first heads: none can make room
        assert refused_at_the_cap(node), "the attack did not fill the cap"
        waited = wait_for_probe(node, 25)
        assert waited > 1, waited  # held until the write timeout, then closed
        assert all_closed_by_node(node, attackers)
        assert probe_status(node) == 200
    finally:
        for sock in attackers:
            sock.close()


def test_a_download_nobody_reads_does_not_hold_the_cap(make_node) -> None:
    node = make_node("--max-connections", "2", "--write-timeout", "6")
    data = os.urandom(48 << 20)  # far more than the kernel's socket buffers hold
    sha1 = requests.post(node.url + "/store", data=data, headers=node.headers(), timeout=60).json()[
        "sha1"
    ]
    _, token = TokenStore(node.storage_dir).create("reader", "read")
    body = json.dumps({"fileKey": {"sha1": sha1}}).encode()
    head = (
        "POST /downloadFileData HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"KACHERY-CLIENT-AUTH-CODE: {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    readers: List[socket.socket] = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            sock.sendall(head + body)
            readers.append(sock)
        time.sleep(0.5)
        assert refused_at_the_cap(node), "the downloads did not fill the cap"
        wait_for_probe(node, 25)
        assert all_closed_by_node(node, readers)
    finally:
        for sock in readers:
            sock.close()


def test_half_sent_heads_make_room_for_a_fresh_client_under_ulimit_256(make_node) -> None:
    with open_file_limit(256):
        node = make_node()  # default cap (half of 256) and header timeout (10 s)
    limits = Path(f"/proc/{node.pid}/limits").read_text()
    assert any(
        line.startswith("Max open files") and " 256 " in line for line in limits.splitlines()
    )
    slow: List[socket.socket] = []
    try:
        for _ in range(300):  # more than the cap, and more than the node's descriptors
            sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            sock.sendall(b"POST /mutable/get HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            slow.append(sock)
        for _ in range(3):  # fresh clients, one after another, each answered at once
            started = time.monotonic()
            assert probe_status(node, timeout=3) == 200
            assert time.monotonic() - started < 3
        emfile = [line for line in node.log.read_text().splitlines() if "Too many open" in line]
        assert not emfile, emfile[:3]
    finally:
        for sock in slow:
            sock.close()


# -- item 9: trickled bodies -----------------------------------------------------------


def test_bodies_trickled_a_byte_a_second_do_not_hold_the_cap(make_node) -> None:
    cap = 10
    node = make_node("--max-connections", str(cap))  # default timeouts: 10 s head start
    _, token = TokenStore(node.storage_dir).create("reader", "read")
    head = (
        "POST /mutable/get HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"KACHERY-CLIENT-AUTH-CODE: {token}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    body = b'{"key": "' + b"k" * 980 + b'"}         '
    tricklers: List[socket.socket] = []
    closed: List[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:  # one byte a second on each connection, never a pause of 60 s
        position = 0
        while not stop.is_set() and len(closed) < len(tricklers):
            for sock in tricklers:
                if sock in closed:
                    continue
                try:
                    sock.sendall(body[position : position + 1])
                except OSError:
                    closed.append(sock)
            position += 1
            stop.wait(1.0)

    thread = threading.Thread(target=trickle, daemon=True)
    try:
        for _ in range(cap):
            sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            sock.sendall(head)
            tricklers.append(sock)
        thread.start()
        time.sleep(1.5)
        assert refused_at_the_cap(node), "the tricklers did not fill the cap"
        wait_for_probe(node, 25)  # 10 s head start at 1024 bytes/s: answered 408, closed
        stop.set()
        thread.join(5)
        assert all_closed_by_node(node, tricklers)
    finally:
        stop.set()
        for sock in tricklers:
            sock.close()


def test_a_slow_but_steady_body_is_still_read(make_node) -> None:
    """The minimum rate is an average after the head start: a body sent in pieces with
    pauses shorter than the idle timeout, fast enough on the whole, is stored."""
    node = make_node("--json-body-timeout", "1", "--body-min-rate", "2000")
    body = b'{"key": "slow", "value": "' + b"v" * 8000 + b'"}'
    head = (
        "POST /mutable/set HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"KACHERY-CLIENT-AUTH-CODE: {node.auth_code()}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", node.port), timeout=20) as sock:
        sock.sendall(head)
        for start in range(0, len(body), 2000):  # 2000 bytes every 0.5 s: 4000 bytes/s
            sock.sendall(body[start : start + 2000])
            time.sleep(0.5)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    got = requests.post(
        node.url + "/mutable/get", json={"key": "slow"}, headers=node.headers(), timeout=10
    ).json()
    assert got["found"] and len(got["value"]) == 8000
