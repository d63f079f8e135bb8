"""The node's HTTP API against a real `kachery-daemon` process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests
from conftest import command, free_port

from kachery_core.protocol.node_key import verify_signature

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
        assert response.headers["KACHERY-ERROR-TYPE"] == "refused"
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


def frames(body: str) -> List[Dict[str, Any]]:
    messages = []
    while body:
        length, _, rest = body.partition("#")
        messages.append(json.loads(rest[: int(length)]))
        body = rest[int(length) :]
    return messages


def test_load_and_download(node) -> None:
    post(node, "/store", data=HELLO)
    response = post(node, "/loadFile", {"fileKey": {"sha1": HELLO_SHA1}}, stream=True)
    body = response.content.decode()
    # framed: <length>#<json>, compact JSON (kachery_core.protocol.wire.encode_frame)
    assert body.startswith('52#{"type":"progress","bytesLoaded":13,"bytesTotal":13}')
    messages = frames(body)
    assert [m["type"] for m in messages] == ["progress", "finished"]
    assert Path(messages[1]["localFilePath"]).read_bytes() == HELLO
    missing = frames(post(node, "/loadFile", {"fileKey": {"sha1": "1" * 40}}).content.decode())
    assert [m["type"] for m in missing] == ["error"]
    assert missing[0]["errorType"] == "notFound" and "not found" in missing[0]["error"]

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
    ("/downloadFileData", {"fileKey": {"sha1": "xyz"}}, 400, "SHA-1 hash"),
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
    assert response.headers["KACHERY-ERROR-TYPE"] == ("notFound" if status == 404 else "invalid")
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
    assert empty["messages"] == {"w": []} and 0.35 < time.monotonic() - started < 3.0


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


def _object_path(node: Any, sha1: str) -> Path:
    return node.storage_dir / "sha1" / sha1[0:2] / sha1[2:4] / sha1[4:6] / sha1


def _damage(path: Path, offset: int = 0) -> None:
    """Flip a byte of an object on disk (objects are read-only: make it writable)."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_damaged_pieces_are_integrity_errors_on_every_api(make_node, tmp_path: Path) -> None:
    """A file made from a damaged chunk (or cut from a damaged whole) is an integrity
    failure, not a miss: the frame's errorType, the HTTP header and the gRPC trailer say so."""
    import grpc

    from kachery_core.grpc_api import kachery_pb2 as pb
    from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc

    grpc_port = free_port()
    node = make_node("--grpc-port", str(grpc_port), "--auth-rotate-seconds", "300")
    # A file with a manifest (over 20 MB: two chunks), its chunks stored as objects of their
    # own, then the whole removed and the small chunk damaged.
    data = os.urandom(20_000_001)
    stored = post(node, "/store", data=data).json()
    whole, manifest = stored["sha1"], stored["manifestSha1"]
    assert manifest
    chunks = [data[:20_000_000], data[20_000_000:]]
    for chunk in chunks:
        assert post(node, "/store", data=chunk).json()["sha1"] == hashlib.sha1(chunk).hexdigest()
    os.unlink(_object_path(node, whole))
    _damage(_object_path(node, hashlib.sha1(chunks[1]).hexdigest()))
    assembled = {"sha1": whole, "manifestSha1": manifest}
    # A chunk cut from a damaged whole.
    assert post(node, "/store", data=HELLO).json()["sha1"] == HELLO_SHA1
    _damage(_object_path(node, HELLO_SHA1), 7)  # in the chunk's range
    world = hashlib.sha1(b"world").hexdigest()
    cut = {
        "sha1": world,
        "chunkOf": {"fileKey": {"sha1": HELLO_SHA1}, "startByte": 7, "endByte": 12},
    }

    for key in (assembled, cut):
        answer = frames(post(node, "/loadFile", {"fileKey": key}).content.decode())
        assert [m["type"] for m in answer] == ["error"], (key, answer)
        assert answer[0]["errorType"] == "integrity", answer
        download = post(node, "/downloadFileData", {"fileKey": key})
        assert download.status_code == 400, download.text
        assert download.headers["KACHERY-ERROR-TYPE"] == "integrity"
        assert len(download.text.strip().splitlines()) == 1 and "hash" in download.text
    assert not _object_path(node, whole).exists() and not _object_path(node, world).exists()

    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        stub = pb_grpc.KacheryStub(channel)
        metadata = [("kachery-client-auth-code", node.auth_code())]
        pb_keys = [
            pb.FileKey(sha1=whole, manifest_sha1=manifest),
            pb.FileKey(sha1=world, chunk_of=pb.ChunkOf(sha1=HELLO_SHA1, start=7, end=12)),
        ]
        calls = [(stub.Load, pb_key) for pb_key in pb_keys] + [
            (stub.ReadRange, pb.RangeRequest(file_key=pb_key, start=0)) for pb_key in pb_keys
        ]
        for rpc, request in calls:
            with pytest.raises(grpc.RpcError) as failed:
                list(rpc(request, metadata=metadata, timeout=60))
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            trailers = dict(failed.value.trailing_metadata() or ())
            assert trailers.get("kachery-error-type") == "integrity", trailers
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetMutable(pb.MutableKey(key_json='"k"'), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert dict(refused.value.trailing_metadata() or ()).get("kachery-error-type") == "refused"
        with pytest.raises(grpc.RpcError) as missing:
            list(stub.Load(pb.FileKey(sha1="3" * 40), metadata=metadata, timeout=10))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert dict(missing.value.trailing_metadata() or ()).get("kachery-error-type") == "notFound"
    finally:
        channel.close()
