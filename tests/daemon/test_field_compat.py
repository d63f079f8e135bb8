"""Raw HTTP against a real node, for what the original kachery-client 1.2.0 sends or expects
(see test_compat_original_client.py for the client itself)."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from typing import Any, Dict, Optional, Tuple

import requests
from conftest import free_port
from raw_http import exchange

EMPTY_SHA1 = hashlib.sha1(b"").hexdigest()


def _store_head(node, *body_headers: str, connection: str = "keep-alive") -> bytes:
    lines = [
        "POST /store HTTP/1.1",
        f"Host: 127.0.0.1:{node.port}",
        "User-Agent: python-requests/2.34.2",
        f"Connection: {connection}",
        f"KACHERY-CLIENT-AUTH-CODE: {node.auth_code()}",
        *body_headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _first_answer(received: bytes) -> Tuple[int, bytes, Optional[dict]]:
    head, _, rest = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, head, json.loads(rest[: rest.index(b"}") + 1])
    except ValueError:
        return status, head, None


def test_empty_upload_with_zero_length_and_chunked_is_stored(node) -> None:
    """What the original client sends for an empty file: both headers, and no body."""
    for body in (b"", b"0\r\n\r\n"):
        raw = _store_head(node, "Content-Length: 0", "Transfer-Encoding: chunked") + body
        status, head, doc = _first_answer(exchange(node.port, raw))
        assert status == 200, (body, head)
        assert doc is not None and doc["sha1"] == EMPTY_SHA1
        assert b"connection: close" in head.lower()  # RFC 9112 6.3: close after such a request


def test_empty_upload_split_across_packets(node) -> None:
    raw = _store_head(node, "Transfer-Encoding: chunked", "Content-Length: 0") + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        for i in range(0, len(raw), 7):
            sock.sendall(raw[i : i + 7])
        received = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
    status, head, doc = _first_answer(received)
    assert status == 200, head
    assert doc is not None and doc["sha1"] == EMPTY_SHA1


def test_bytes_after_the_empty_upload_are_not_read(node) -> None:
    probe = f"GET /probe HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n\r\n".encode()
    raw = (
        _store_head(node, "Content-Length: 0", "Transfer-Encoding: chunked") + b"0\r\n\r\n" + probe
    )
    received = exchange(node.port, raw)
    assert received.count(b"HTTP/1.1 ") == 1, received
    assert _first_answer(received)[0] == 200


def test_other_length_and_chunked_combinations_are_refused(node) -> None:
    cases = [
        (("Content-Length: 5", "Transfer-Encoding: chunked"), b"5\r\nhello\r\n0\r\n\r\n"),
        (("Content-Length: 0", "Transfer-Encoding: chunked"), b"5\r\nhello\r\n0\r\n\r\n"),
        (("Content-Length: 0", "Transfer-Encoding: chunked"), b"0;ext=1\r\n\r\n"),
        (("Content-Length: 0", "Content-Length: 0", "Transfer-Encoding: chunked"), b"0\r\n\r\n"),
        (("Content-Length: 0", "Transfer-Encoding: gzip, chunked"), b"0\r\n\r\n"),
        (("Content-Length: 00", "Transfer-Encoding: chunked"), b"0\r\n\r\n"),
    ]
    for headers, body in cases:
        status, head, _ = _first_answer(exchange(node.port, _store_head(node, *headers) + body))
        assert status == 400, (headers, body, head)


def test_the_pair_on_another_route_is_refused(node) -> None:
    raw = (
        f"POST /storeFile HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
        f"KACHERY-CLIENT-AUTH-CODE: {node.auth_code()}\r\n"
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ).encode()
    assert _first_answer(exchange(node.port, raw))[0] == 400


def test_the_pair_on_a_kept_alive_connection_is_refused(node) -> None:
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(_store_head(node, "Content-Length: 2") + b"ab")
        received = b""
        while b"}" not in received:
            received += sock.recv(65536)
        assert _first_answer(received)[0] == 200, received
        second = _store_head(node, "Content-Length: 0", "Transfer-Encoding: chunked")
        sock.sendall(second + b"0\r\n\r\n")
        received = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
    assert _first_answer(received)[0] == 400, received


# -- feed watches ----------------------------------------------------------------------


def _post(node, path: str, doc: Any) -> requests.Response:
    return requests.post(node.url + path, json=doc, headers=node.headers(), timeout=200)


def _feed_with_messages(node) -> Tuple[str, str, str]:
    """(feed ID, a subfeed with two messages, an empty subfeed)."""
    feed_id = _post(node, "/feed/createFeed", {}).json()["feedId"]
    full, empty = hashlib.sha1(b"full").hexdigest(), hashlib.sha1(b"empty").hexdigest()
    doc = {"feedId": feed_id, "subfeedHash": full, "messages": [{"n": 1}, {"n": 2}]}
    assert _post(node, "/feed/appendMessages", doc).json()["success"]
    return feed_id, full, empty


def _watches(feed_id: str, **subfeeds: str) -> Dict[str, Any]:
    return {
        name: {"feedId": feed_id, "subfeedHash": subfeed, "position": 0}
        for name, subfeed in subfeeds.items()
    }


def test_a_wait_beyond_the_maximum_is_cut_not_refused(node) -> None:
    feed_id, full, empty = _feed_with_messages(node)
    started = time.monotonic()
    answer = _post(
        node,
        "/feed/watchForNewMessages",
        {"subfeedWatches": _watches(feed_id, a=full, b=empty), "waitMsec": 180_000},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["messages"] == {"a": [{"n": 1}, {"n": 2}], "b": []}
    assert time.monotonic() - started < 10  # at once: messages were there
    negative = _post(node, "/feed/watchForNewMessages", {"subfeedWatches": {}, "waitMsec": -1})
    assert negative.status_code == 400 and "waitMsec" in negative.text


def test_a_watch_that_times_out_names_every_watch(node) -> None:
    feed_id, _, empty = _feed_with_messages(node)
    other = hashlib.sha1(b"other").hexdigest()
    answer = _post(
        node,
        "/feed/watchForNewMessages",
        {"subfeedWatches": _watches(feed_id, x=empty, y=other), "waitMsec": 50},
    ).json()
    assert answer == {"success": True, "messages": {"x": [], "y": []}}


def test_grpc_watch_cuts_long_waits_and_names_every_watch(make_node) -> None:
    import grpc

    from kachery_core.grpc_api import kachery_pb2 as pb
    from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc

    port = free_port()
    node = make_node("--grpc-port", str(port), "--auth-rotate-seconds", "300")
    feed_id, full, empty = _feed_with_messages(node)
    auth = (("kachery-client-auth-code", node.auth_code()),)

    def watch(wait_msec: int, **subfeeds: str) -> Dict[str, Any]:
        request = pb.WatchRequest(wait_msec=wait_msec)
        for name, subfeed in subfeeds.items():
            w = request.watches[name]
            w.subfeed.feed_id, w.subfeed.subfeed_hash = feed_id, subfeed
        reply = stub.WatchForNewMessages(request, metadata=auth, timeout=60)
        return {
            name: [json.loads(m) for m in got.messages_json] for name, got in reply.messages.items()
        }

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.KacheryStub(channel)
        started = time.monotonic()
        assert watch(180_000, a=full, b=empty) == {"a": [{"n": 1}, {"n": 2}], "b": []}
        assert time.monotonic() - started < 10
        assert watch(50, b=empty) == {"b": []}


# -- signed message timestamps ---------------------------------------------------------


def test_signed_timestamps_are_milliseconds_and_old_seconds_still_read(node) -> None:
    """New messages: integer milliseconds (the original daemon's unit). A message an earlier
    version appended with float seconds is still returned as stored, its signature valid,
    and the chain goes on from it."""
    import sqlite3

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kachery_core.protocol.node_key import verify_signature
    from kachery_daemon.feeds import FILE_NAME, timestamp_seconds
    from kachery_daemon.mutables import canonical_json

    feed_id = _post(node, "/feed/createFeed", {}).json()["feedId"]
    subfeed = hashlib.sha1(b"log").hexdigest()
    node.stop()
    old_body = {"message": "old", "messageNumber": 0, "previousSignature": None}
    old_body["timestamp"] = time.time()  # what earlier versions wrote
    with sqlite3.connect(str(node.storage_dir / FILE_NAME)) as db:
        (raw_key,) = db.execute(
            "SELECT private_key FROM feeds WHERE feed_id = ?", (feed_id,)
        ).fetchone()
        text = canonical_json(old_body)
        signature = Ed25519PrivateKey.from_private_bytes(bytes(raw_key)).sign(text.encode())
        db.execute(
            "INSERT INTO messages (feed_id, subfeed, number, body, signature) VALUES (?, ?, 0, ?, ?)",
            (feed_id, subfeed, text, signature.hex()),
        )
    node.start()
    doc = {"feedId": feed_id, "subfeedHash": subfeed, "messages": ["new"]}
    assert _post(node, "/feed/appendMessages", doc).json()["success"]
    watch = {"subfeedWatches": _watches(feed_id, w=subfeed), "signed": True}
    old, new = _post(node, "/feed/watchForNewMessages", watch).json()["messages"]["w"]
    for envelope in (old, new):
        body_text = canonical_json(envelope["body"]).encode()
        assert verify_signature(feed_id, body_text, envelope["signature"])
        assert abs(timestamp_seconds(envelope["body"]["timestamp"]) - time.time()) < 600
    assert old["body"] == old_body
    assert new["body"]["previousSignature"] == old["signature"]
    assert isinstance(new["body"]["timestamp"], int) and new["body"]["timestamp"] > 1e12


# -- auth code rotation ----------------------------------------------------------------


def test_short_auth_rotation_is_a_usage_error_unless_allowed(tmp_path, make_node) -> None:
    import subprocess

    from conftest import command

    args = [command("kachery-daemon"), "start", "--storage-dir", str(tmp_path / "s")]
    refused = subprocess.run(
        [*args, "--auth-rotate-seconds", "59"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "at least 60" in lines[0] and "caches" in lines[0], lines
    node = make_node("--auth-rotate-seconds", "0.5", "--allow-short-rotation")
    assert node.probe() is not None
