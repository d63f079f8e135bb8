"""The node against hostile or broken peers: huge and malformed bodies, slow clients,
dishonest manifests, a full disk, damaged token files, leaked watches, all on a real node."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests

from kachery_daemon.feed_watch import Appended


def post(node: Any, path: str, doc: Any = None, **kwargs: Any) -> requests.Response:
    headers = kwargs.pop("headers", node.headers())
    return requests.post(node.url + path, json=doc, headers=headers, timeout=60, **kwargs)


def raw_post(node: Any, path: str, body: bytes) -> requests.Response:
    headers = dict(node.headers(), **{"Content-Type": "application/json"})
    return requests.post(node.url + path, data=body, headers=headers, timeout=60)


def one_line_4xx(response: requests.Response, status: int = 400) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    text = response.text
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text, text[:300]
    return text


def frames(body: bytes) -> List[Dict[str, Any]]:
    messages, text = [], body.decode()
    while text:
        length, _, rest = text.partition("#")
        messages.append(json.loads(rest[: int(length)]))
        text = rest[int(length) :]
    return messages


# -- 1. JSON bodies: read whole up to 16 MiB, 413 beyond ---------------------------------


def test_large_json_bodies_round_trip_and_oversized_ones_get_413(node) -> None:
    value = "x" * 10_000_000
    assert post(node, "/mutable/set", {"key": "big", "value": value}).json() == {"success": True}
    got = post(node, "/mutable/get", {"key": "big"}).json()
    assert got["found"] and got["value"] == value

    huge = json.dumps({"key": "huge", "value": "y" * 17_000_000}).encode()
    text = one_line_4xx(raw_post(node, "/mutable/set", huge), 413)
    assert "16 MiB" in text

    def chunked():  # no Content-Length: the limit holds as the body grows
        for start in range(0, len(huge), 1 << 20):
            yield huge[start : start + (1 << 20)]

    response = requests.post(
        node.url + "/mutable/set", data=chunked(), headers=node.headers(), timeout=60
    )
    assert one_line_4xx(response, 413) and "16 MiB" in response.text
    assert post(node, "/mutable/get", {"key": "huge"}).json()["found"] is False


def test_a_stalled_body_gets_408(make_node) -> None:
    node = make_node("--body-idle-timeout", "1")
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)
    conn.putrequest("POST", "/mutable/set")
    conn.putheader("KACHERY-CLIENT-AUTH-CODE", node.auth_code())
    conn.putheader("Content-Length", "1000")
    conn.endheaders()
    conn.send(b'{"key": "k", "value": "')
    started = time.monotonic()
    response = conn.getresponse()
    assert response.status == 408 and b"stalled" in response.read()
    assert 0.8 < time.monotonic() - started < 10
    conn.close()


# -- 2. malformed values: 400, never 500 -------------------------------------------------


def test_malformed_values_are_400_not_500(node) -> None:
    sha1 = post(node, "/store", data=b"hello").json()["sha1"]
    key = {"sha1": sha1}
    cases = [
        ("/mutable/get", b"[" * 100_000, "nested"),
        ("/mutable/set", b'{"key": "k", "value": NaN}', "NaN"),
        ("/mutable/set", b'{"key": "k", "value": [Infinity]}', "Infinity"),
        ("/mutable/set", b'{"key": "k", "value": -Infinity}', "Infinity"),
        ("/mutable/set", b'{"key": "k", "value": 1e999}', "too large"),
        ("/mutable/set", b'{"key": "k", "value": "\xff\xfe"}', "UTF-8"),
        ("/storeFile", json.dumps({"localFilePath": "/tmp/a\0b"}).encode(), "NUL"),
        ("/storeFile", json.dumps({"localFilePath": "/" + "a" * 5000}).encode(), "longer"),
        ("/linkFile", json.dumps({"localFilePath": "/x\0", "size": 1, "mtime": 1}).encode(), ""),
        (
            "/linkFile",
            json.dumps({"localFilePath": "/etc/hostname", "size": 1, "mtime": 10**400}).encode(),
            "mtime",
        ),
        (
            "/downloadFileData",
            json.dumps({"fileKey": key, "startByte": 2**63}).encode(),
            "startByte",
        ),
        ("/downloadFileData", json.dumps({"fileKey": key, "endByte": 2**64}).encode(), "endByte"),
        (
            "/loadFile",
            json.dumps(
                {
                    "fileKey": {
                        "sha1": "1" * 40,
                        "chunkOf": {"fileKey": key, "startByte": 0, "endByte": 2**70},
                    }
                }
            ).encode(),
            "endByte",
        ),
        (
            "/feed/watchForNewMessages",
            json.dumps(
                {
                    "subfeedWatches": {
                        "w": {"feedId": "a" * 64, "subfeedHash": "b" * 40, "position": 2**63}
                    }
                }
            ).encode(),
            "position",
        ),
        (
            "/feed/watchForNewMessages",
            json.dumps({"subfeedWatches": {}, "maxNumMessages": 2**80}).encode(),
            "maxNumMessages",
        ),
        ("/feed/createFeed", b'{"feedName": "\\udc00"}', ""),
    ]
    for path, body, mention in cases:
        text = one_line_4xx(raw_post(node, path, body))
        assert mention in text, (path, body[:80], text)
    assert post(node, "/mutable/get", {"key": "k"}).json()["found"] is False
    assert requests.get(node.url + "/probe", timeout=5).ok


def test_a_damaged_token_file_is_a_clean_refusal(node) -> None:
    (node.storage_dir / "kachery-tokens.json").write_text(json.dumps({"tokens": [{"id": "x"}]}))
    response = post(
        node, "/mutable/get", {"key": "k"}, headers={"KACHERY-CLIENT-AUTH-CODE": "kt_abc"}
    )
    text = one_line_4xx(response, 403)
    assert "token file" in text and response.headers["KACHERY-ERROR-TYPE"] == "refused"
    assert post(node, "/mutable/get", {"key": "k"}).json()["found"] is False  # the code still works


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount a tmpfs"
)
def test_a_full_disk_is_507_and_keeps_nothing(make_node, tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        node = make_node(storage_dir=mount / "storage")
        response = post(node, "/store", data=os.urandom(8_000_000))
        text = one_line_4xx(response, 507)
        assert f"no space left on the node's storage at {node.storage_dir}" in text
        assert response.headers["KACHERY-ERROR-TYPE"] == "error"
        assert list((node.storage_dir / "tmp").glob("*")) == []
        assert not (node.storage_dir / "sha1").exists() or not any(
            p.is_file() for p in (node.storage_dir / "sha1").rglob("*")
        )
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * max(0, free - 200_000))
        response = post(node, "/mutable/set", {"key": "k", "value": "v" * 1_000_000})
        assert "no space left" in one_line_4xx(response, 507)
        (mount / "filler").unlink()
        assert post(node, "/mutable/get", {"key": "k"}).json()["found"] is False
        assert requests.get(node.url + "/probe", timeout=5).ok
        node.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount)])


# -- 3. slow clients, timeouts, connection cap -------------------------------------------


def test_half_sent_requests_cannot_starve_the_node(make_node) -> None:
    import resource

    cap = 60
    node = make_node("--max-connections", str(cap), "--header-timeout", "2")
    resource.prlimit(node.pid, resource.RLIMIT_NOFILE, (256, 256))  # as `ulimit -n 256`
    slow: List[socket.socket] = []
    try:
        for _ in range(300):  # more than the cap, and more than the node's descriptors
            sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            sock.sendall(b"POST /mutable/get HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            slow.append(sock)
        opened = time.monotonic()
        deadline = opened + 8
        answered = False
        while time.monotonic() < deadline and not answered:
            with contextlib.suppress(requests.RequestException):
                answered = requests.get(node.url + "/probe", timeout=2).status_code == 200
            if not answered:
                time.sleep(0.2)
        assert answered, "the node did not answer /probe while slow clients held connections"
        # at the cap each new connection made room by closing the oldest half-sent one, and
        # the last ones were closed by the header timeout: none answered, none left hanging
        assert all(_read_all(sock) == b"" for sock in slow)
        assert time.monotonic() - opened < 15
    finally:
        for sock in slow:
            sock.close()


def test_a_cap_full_of_complete_requests_answers_503_at_once(make_node) -> None:
    """Connections whose heads are complete cannot be closed to make room: a new one is
    answered 503 at once, without being read, and served again once they end."""
    cap = 5
    node = make_node("--max-connections", str(cap), "--body-idle-timeout", "3")
    head = (
        f"POST /mutable/get HTTP/1.1\r\nHost: x\r\nKACHERY-CLIENT-AUTH-CODE: {node.auth_code()}"
        "\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    waiting = []
    try:
        for _ in range(cap):
            sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            sock.sendall(head)  # and no body: each waits for its body
            waiting.append(sock)
        time.sleep(0.5)
        started = time.monotonic()
        # nothing sent: the answer comes unread, and a close with a request unread could
        # reset the connection before the answer is seen
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as fresh:
            answer = _read_all(fresh)
        assert answer.startswith(b"HTTP/1.1 503") and time.monotonic() - started < 2, answer
        assert b"too many open connections" in answer and b"Retry-After: 1\r\n" in answer
        assert all(b" 408 " in _read_all(sock) for sock in waiting)  # the body idle timeout
        assert requests.get(node.url + "/probe", timeout=5).status_code == 200
    finally:
        for sock in waiting:
            sock.close()


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    try:
        while True:
            piece = sock.recv(65536)
            if not piece:
                return data
            data += piece
    except ConnectionResetError:
        return data


# -- 4. dishonest manifests ----------------------------------------------------------------


def test_a_manifest_listing_one_object_many_times_is_refused_at_once(node) -> None:
    piece = os.urandom(4_000_000)
    piece_sha1 = post(node, "/store", data=piece).json()["sha1"]
    size = 250 * len(piece)
    fake_sha1 = "5" * 40
    manifest = {
        "size": size,
        "sha1": fake_sha1,
        "chunks": [
            {"start": i * len(piece), "end": (i + 1) * len(piece), "sha1": piece_sha1}
            for i in range(250)
        ],
    }
    manifest_sha1 = post(node, "/store", data=json.dumps(manifest).encode()).json()["sha1"]
    started = time.monotonic()
    answer = post(
        node, "/loadFile", {"fileKey": {"sha1": fake_sha1, "manifestSha1": manifest_sha1}}
    )
    (error,) = frames(answer.content)
    assert error["type"] == "error" and error["errorType"] in ("integrity", "invalid"), error
    assert "chunk" in error["error"]
    assert time.monotonic() - started < 5
    staged = sum(p.stat().st_size for p in (node.storage_dir / "tmp").glob("*"))
    assert staged == 0

    # Honest sizes, one chunk damaged: refused within that chunk.
    data = os.urandom(20_000_001)
    chunks = [data[:20_000_000], data[20_000_000:]]
    sums = [hashlib.sha1(c).hexdigest() for c in chunks]
    post(node, "/store", data=chunks[1])
    lying = {
        "size": len(data),
        "sha1": hashlib.sha1(data).hexdigest(),
        "chunks": [
            {"start": 0, "end": 20_000_000, "sha1": sums[1]},
            {"start": 20_000_000, "end": 20_000_001, "sha1": sums[1]},
        ],
    }
    lying_sha1 = post(node, "/store", data=json.dumps(lying).encode()).json()["sha1"]
    answer = post(
        node, "/loadFile", {"fileKey": {"sha1": lying["sha1"], "manifestSha1": lying_sha1}}
    )
    (error,) = frames(answer.content)
    assert error["errorType"] == "integrity" and "bytes" in error["error"], error


# -- 7. feed watches do not leak -------------------------------------------------------


def test_watch_events_are_released_when_the_last_waiter_ends() -> None:
    import asyncio

    async def scenario() -> None:
        appended = Appended()
        key = ("a" * 64, "b" * 40)
        with appended.watching([key]):
            appended.event(*key)
            with appended.watching([key, key]):
                appended.event(*key)
            assert appended.watched == 1  # another poll still waits
        assert appended.watched == 0
        for i in range(1000):
            with appended.watching([(f"{i:064x}", "b" * 40)]):
                appended.event(f"{i:064x}", "b" * 40)
        assert appended.watched == 0

    asyncio.run(scenario())


def test_watches_leave_nothing_behind_on_the_node(node) -> None:
    feed_id = post(node, "/feed/createFeed", {}).json()["feedId"]
    for i in range(20):
        subfeed = hashlib.sha1(str(i).encode()).hexdigest()
        watch = {
            "subfeedWatches": {"w": {"feedId": feed_id, "subfeedHash": subfeed}},
            "waitMsec": 10,
        }
        assert post(node, "/feed/watchForNewMessages", watch).json()["messages"] == {"w": []}
    stats = requests.get(node.url + "/stats", headers=node.headers(), timeout=5).json()["stats"]
    assert stats["watchedSubfeeds"] == 0
