"""The node's HTTP API against a real `kachery-daemon` process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict

import pytest
import requests
from conftest import command

from kachery_core.node_key import verify_signature

HELLO = b"Hello, world!"
HELLO_SHA1 = "943a702d06f34599aee1f8da8ef9f7296031d699"


def post(node: Any, path: str, doc: Any = None, **kwargs: Any) -> requests.Response:
    headers = kwargs.pop("headers", node.headers())
    return requests.post(node.url + path, json=doc, headers=headers, timeout=30, **kwargs)


def test_probe_and_identity(node) -> None:
    doc = requests.get(node.url + "/probe", timeout=5).json()
    assert doc["success"] is True
    assert doc["kacheryStorageDir"] == str(node.storage_dir)
    assert (node.storage_dir / "kachery-node-id").read_text() == doc["nodeId"]  # no newline
    assert len(doc["nodeId"]) == 64
    signed = requests.get(node.url + "/probe?nonce=00ff", timeout=5).json()
    assert verify_signature(doc["nodeId"], b"kachery-probe:00ff", signed["signature"])
    assert not verify_signature(doc["nodeId"], b"kachery-probe:00fe", signed["signature"])
    bad = requests.get(node.url + "/probe?nonce=xyz", timeout=5)
    assert bad.status_code == 400 and "nonce" in bad.text


def test_auth_required(node) -> None:
    for headers in ({}, {"KACHERY-CLIENT-AUTH-CODE": "wrong"}):
        response = post(node, "/mutable/get", {"key": "k"}, headers=headers)
        assert response.status_code == 403
        assert (
            len(response.text.strip().splitlines()) == 1
            and "KACHERY-CLIENT-AUTH-CODE" in response.text
        )
    mode = (node.storage_dir / "client-auth").stat().st_mode & 0o777
    assert mode == 0o640


def test_store_routes(node, tmp_path: Path) -> None:
    stored = post(
        node,
        "/store",
        data=HELLO,
        headers=dict(node.headers(), **{"Content-Type": "application/octet-stream"}),
    ).json()
    assert stored == {"success": True, "error": None, "sha1": HELLO_SHA1, "manifestSha1": None}
    obj = node.storage_dir / "sha1" / "94" / "3a" / "70" / HELLO_SHA1
    assert obj.read_bytes() == HELLO

    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(20_000_001))
    doc = post(node, "/storeFile", {"localFilePath": str(src)}).json()
    assert doc["sha1"] == hashlib.sha1(src.read_bytes()).hexdigest() and doc["manifestSha1"]

    linked = tmp_path / "linked.txt"
    linked.write_text("link me")
    st = linked.stat()
    doc = post(
        node, "/linkFile", {"localFilePath": str(linked), "size": st.st_size, "mtime": st.st_mtime}
    ).json()
    assert doc["sha1"] == hashlib.sha1(b"link me").hexdigest()
    changed = post(
        node,
        "/linkFile",
        {"localFilePath": str(linked), "size": st.st_size + 1, "mtime": st.st_mtime},
    )
    assert changed.status_code == 400 and "changed" in changed.text


def test_load_and_download(node) -> None:
    post(node, "/store", data=HELLO)
    response = post(node, "/loadFile", {"fileKey": {"sha1": HELLO_SHA1}}, stream=True)
    body = response.content.decode()
    assert body.startswith("57#")  # framed: <length>#<json>
    messages = []
    while body:
        length, _, rest = body.partition("#")
        messages.append(json.loads(rest[: int(length)]))
        body = rest[int(length) :]
    assert [m["type"] for m in messages] == ["progress", "finished"]
    assert Path(messages[1]["localFilePath"]).read_bytes() == HELLO
    missing = post(node, "/loadFile", {"fileKey": {"sha1": "1" * 40}}).content.decode()
    assert '"type": "error"' in missing

    assert post(node, "/downloadFileData", {"fileKey": {"sha1": HELLO_SHA1}}).content == HELLO
    part = post(
        node, "/downloadFileData", {"fileKey": {"sha1": HELLO_SHA1}, "startByte": 7, "endByte": 12}
    )
    assert part.content == b"world"


BAD_REQUESTS = [
    ("/mutable/get", "not json", 400, "not valid JSON"),
    ("/mutable/get", [1, 2], 400, "JSON object"),
    ("/mutable/get", {}, 400, "'key'"),
    ("/mutable/set", {"key": "k"}, 400, "'value'"),
    ("/storeFile", {"localFilePath": 5}, 400, "'localFilePath'"),
    ("/storeFile", {"localFilePath": "relative/path"}, 400, "absolute"),
    ("/storeFile", {"localFilePath": "/nonexistent/file"}, 400, "no such file"),
    ("/storeFile", {"localFilePath": "/tmp"}, 400, "directory"),
    ("/linkFile", {"localFilePath": "/etc/hostname", "size": "big", "mtime": 1}, 400, "'size'"),
    ("/downloadFileData", {"fileKey": {"sha1": "xyz"}}, 400, "not a SHA-1"),
    (
        "/downloadFileData",
        {"fileKey": {"sha1": HELLO_SHA1}, "startByte": 5, "endByte": 99},
        400,
        "outside",
    ),
    ("/downloadFileData", {"fileKey": {"sha1": HELLO_SHA1}, "startByte": True}, 400, "startByte"),
    ("/downloadFileData", {"fileKey": {"sha1": "2" * 40}}, 404, "not found"),
    ("/loadFile", {"fileKey": "nope"}, 400, "fileKey"),
    ("/feed/getFeedInfo", {"feedId": "../../etc"}, 400, "feed ID"),
    (
        "/feed/appendMessages",
        {"feedId": "a" * 64, "subfeedHash": "b" * 40, "messages": [1]},
        404,
        "not writeable",
    ),
    (
        "/feed/appendMessages",
        {"feedId": "a" * 64, "subfeedHash": "short", "messages": []},
        400,
        "subfeedHash",
    ),
    ("/feed/watchForNewMessages", {"subfeedWatches": [], "waitMsec": 0}, 400, "subfeedWatches"),
    ("/feed/watchForNewMessages", {"subfeedWatches": {}, "waitMsec": -5}, 400, "waitMsec"),
    ("/no/such/route", {}, 404, "Not Found"),
]


@pytest.mark.parametrize(
    "path,body,status,mention", BAD_REQUESTS, ids=[f"{p} {m}" for p, _, _, m in BAD_REQUESTS]
)
def test_bad_requests_get_one_line_4xx(
    node, path: str, body: Any, status: int, mention: str
) -> None:
    post(node, "/store", data=HELLO)
    if isinstance(body, str):
        response = requests.post(node.url + path, data=body, headers=node.headers(), timeout=10)
    else:
        response = post(node, path, body)
    assert response.status_code == status, response.text
    assert len(response.text.strip().splitlines()) == 1
    assert mention in response.text
    assert "Traceback" not in response.text


def test_store_without_length_or_chunked_is_refused(node) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    conn.putrequest("POST", "/store")
    conn.putheader("KACHERY-CLIENT-AUTH-CODE", node.auth_code())
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 400 and b"Content-Length" in response.read()


def test_mutables_and_feeds_persist_across_restart(node) -> None:
    assert post(node, "/mutable/set", {"key": {"b": 2, "a": 1}, "value": [1, "x"]}).json() == {
        "success": True
    }
    assert post(
        node, "/mutable/set", {"key": {"a": 1, "b": 2}, "value": 5, "update": False}
    ).json() == {"success": False}
    feed_id = post(node, "/feed/createFeed", {"feedName": "results"}).json()["feedId"]
    subfeed = hashlib.sha1(b"main").hexdigest()
    assert post(
        node,
        "/feed/appendMessages",
        {"feedId": feed_id, "subfeedHash": subfeed, "messages": [{"n": 1}, {"n": 2}]},
    ).json()["success"]
    node_id = requests.get(node.url + "/probe", timeout=5).json()["nodeId"]
    node.restart()
    assert requests.get(node.url + "/probe", timeout=5).json()["nodeId"] == node_id
    assert post(node, "/mutable/get", {"key": {"a": 1, "b": 2}}).json() == {
        "success": True,
        "found": True,
        "value": [1, "x"],
    }
    assert post(node, "/feed/getFeedId", {"feedName": "results"}).json() == {
        "success": True,
        "feedId": feed_id,
    }
    assert post(node, "/feed/getFeedInfo", {"feedId": feed_id}).json() == {
        "success": True,
        "isWriteable": True,
    }
    assert (
        post(node, "/feed/getNumLocalMessages", {"feedId": feed_id, "subfeedHash": subfeed}).json()[
            "numMessages"
        ]
        == 2
    )
    watch = {
        "subfeedWatches": {"w": {"feedId": feed_id, "subfeedHash": subfeed, "position": 1}},
        "waitMsec": 0,
        "signed": True,
    }
    (envelope,) = post(node, "/feed/watchForNewMessages", watch).json()["messages"]["w"]
    assert envelope["body"]["message"] == {"n": 2} and envelope["body"]["messageNumber"] == 1
    body_text = json.dumps(envelope["body"], separators=(",", ":"), sort_keys=True).encode()
    assert verify_signature(feed_id, body_text, envelope["signature"])
    assert post(node, "/mutable/delete", {"key": {"a": 1, "b": 2}}).json() == {"success": True}
    assert post(node, "/mutable/get", {"key": {"a": 1, "b": 2}}).json()["found"] is False
    assert post(node, "/feed/deleteFeed", {"feedId": feed_id}).json() == {"success": True}
    assert post(node, "/feed/getFeedInfo", {"feedId": feed_id}).json()["isWriteable"] is False


def test_long_poll_wakes_on_append_and_times_out(node) -> None:
    feed_id = post(node, "/feed/createFeed", {}).json()["feedId"]
    subfeed = hashlib.sha1(b"s").hexdigest()
    watch = {
        "subfeedWatches": {"w": {"feedId": feed_id, "subfeedHash": subfeed, "position": 0}},
        "waitMsec": 5000,
    }
    result: Dict[str, Any] = {}

    def waiter() -> None:
        started = time.monotonic()
        result["doc"] = post(node, "/feed/watchForNewMessages", watch).json()
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    post(
        node,
        "/feed/appendMessages",
        {"feedId": feed_id, "subfeedHash": subfeed, "messages": ["hi"]},
    )
    thread.join(10)
    assert result["doc"]["messages"] == {"w": ["hi"]}
    assert 0.4 < result["seconds"] < 3.0
    started = time.monotonic()
    empty = post(
        node,
        "/feed/watchForNewMessages",
        dict(
            watch,
            waitMsec=400,
            subfeedWatches={"w": dict(watch["subfeedWatches"]["w"], position=1)},
        ),
    ).json()
    assert empty["messages"] == {} and 0.35 < time.monotonic() - started < 3.0


def test_info_stop_and_single_node_per_storage(node, make_node, kenv) -> None:
    info = subprocess.run(
        [command("kachery-daemon"), "info", "--storage-dir", str(node.storage_dir)],
        capture_output=True,
        text=True,
        env=kenv,
    )
    assert "running      yes" in info.stdout and str(node.pid) in info.stdout
    second = subprocess.run(
        [
            command("kachery-daemon"),
            "start",
            "--port",
            str(node.port + 1),
            "--storage-dir",
            str(node.storage_dir),
        ],
        capture_output=True,
        text=True,
        env=kenv,
        timeout=30,
    )
    assert (
        second.returncode == 1
        and "already running" in second.stderr
        and str(node.pid) in second.stderr
    )
    stopped = subprocess.run(
        [command("kachery-daemon"), "stop", "--storage-dir", str(node.storage_dir)],
        capture_output=True,
        text=True,
        env=kenv,
        timeout=60,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert node.proc is not None and node.proc.wait(10) == 0
    node.proc = None
    assert not (node.storage_dir / "kachery-daemon.json").exists()
    again = subprocess.run(
        [command("kachery-daemon"), "stop", "--storage-dir", str(node.storage_dir)],
        capture_output=True,
        text=True,
        env=kenv,
    )
    assert again.returncode == 1 and "no node is running" in again.stderr


def test_node_key_from_generate_node_id(make_node, cli, tmp_path: Path) -> None:
    key = tmp_path / "node.pem"
    node_id = cli("generate-node-id", "--key-file", str(key)).stdout.strip()
    started = make_node("--node-key", str(key))
    assert requests.get(started.url + "/probe", timeout=5).json()["nodeId"] == node_id
    assert not (started.storage_dir / "kachery-node-key.pem").exists()
    own = make_node()
    key_file = own.storage_dir / "kachery-node-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_graceful_stop_aborts_an_upload_cleanly(make_node) -> None:
    import http.client

    started = make_node("--shutdown-grace-seconds", "1")
    conn = http.client.HTTPConnection("127.0.0.1", started.port, timeout=30)
    conn.putrequest("POST", "/store")
    conn.putheader("KACHERY-CLIENT-AUTH-CODE", started.auth_code())
    conn.putheader("Content-Length", str(50_000_000))
    conn.endheaders()
    conn.send(os.urandom(10_000_000))  # then stall: the upload is in flight
    time.sleep(0.5)
    assert list((started.storage_dir / "tmp").glob("*.part")), "the upload should be staging"
    began = time.monotonic()
    assert started.stop() == 0
    assert time.monotonic() - began < 10
    assert list((started.storage_dir / "tmp").glob("*.part")) == []
    objects = (
        [p for p in (started.storage_dir / "sha1").rglob("*") if p.is_file()]
        if (started.storage_dir / "sha1").exists()
        else []
    )
    assert objects == []
    conn.close()
