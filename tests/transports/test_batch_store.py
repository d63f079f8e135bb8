"""Batch stores against real nodes: many small files in one request (`POST /storeFiles`
with their bytes, `POST /storeLocalFiles` with their paths), from `store-file -r` over
`http` and `remote`; every bound and hash the node checks, hostile bodies, wrong
credentials, a dishonest answer, and older nodes without the routes."""

from __future__ import annotations

import hashlib
import http.client
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests
from conftest import sha1_file
from node_fixtures import NodeProcess, make_token, remote_transport
from proxies import proxy_launcher

from kachery_client.directories.operations import store_folder
from kachery_core.errors import IntegrityError
from kachery_core.protocol import wire
from kachery_core.store.layout import StorageLayout

PROXY = str(Path(__file__).parent.parent / "batch_proxy.py")
MIB = 1 << 20


def _stats(node: NodeProcess) -> Dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    conn.request("GET", "/stats", headers=node.headers())
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return dict(doc["stats"])


def _frame(doc: Dict[str, Any]) -> bytes:
    return wire.encode_frame(doc)


def _body(datas: List[bytes], finished: bool = True) -> bytes:
    parts = [_frame(wire.batch_file_frame(hashlib.sha1(d).hexdigest(), len(d))) + d for d in datas]
    return b"".join(parts) + (_frame(wire.finished_frame()) if finished else b"")


def _post(node: NodeProcess, route: str, headers: Optional[Dict[str, str]] = None, **kw: Any):
    return requests.post(
        node.url + route,
        headers=headers if headers is not None else node.headers(),
        timeout=60,
        **kw,
    )


def _objects(storage: Path) -> Dict[str, bytes]:
    """Every object in a storage dir, each checked to hash to its name; no staging file left."""
    found = {}
    for path in (storage / "sha1").rglob("*") if (storage / "sha1").exists() else []:
        if path.is_file() and not path.name.endswith(".link"):
            assert sha1_file(path) == path.name, f"unverified bytes kept at {path}"
            found[path.name] = path.read_bytes()
    staging = list((storage / "tmp").glob("*")) if (storage / "tmp").exists() else []
    assert staging == [], staging
    return found


def _tree(root: Path, count: int, seed: int = 0) -> Dict[Path, bytes]:
    files = {}
    for i in range(count):
        path = root / f"d{i % 5}" / f"e{i % 3}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        files[path] = f"file {seed}-{i} ".encode() * (1 + i % 200)
        path.write_bytes(files[path])
    return files


@pytest.fixture
def start_proxy() -> Iterator:
    with proxy_launcher(PROXY) as start:
        yield start


# -- the client: store-file -r ----------------------------------------------------------


@pytest.mark.parametrize("backend", ["http", "remote"])
def test_store_dir_goes_in_batches(make_node, cli, kenv, tmp_path: Path, backend: str) -> None:
    node = make_node()
    tree = tmp_path / "tree"
    files = _tree(tree, 300)
    (tree / "big.bin").write_bytes(b"B" * (MIB + 1))  # over the batch limit: alone
    (tree / "empty").write_bytes(b"")
    (tree / "same-as-f0.bin").write_bytes(files[tree / "d0" / "e0" / "f0.bin"])
    env = dict(
        kenv,
        KACHERY_TRANSPORT=backend,
        KACHERY_DAEMON_PORT=str(node.port),
        KACHERY_STORAGE_DIR=str(node.storage_dir),
    )
    if backend == "remote":
        env.update(
            KACHERY_AUTH_TOKEN=make_token(node, "batch-write", "write"),
            KACHERY_STORAGE_DIR=str(tmp_path / "client-cache"),
        )
    stored = cli("store-file", "-r", str(tree), env=env)
    assert stored.returncode == 0, stored
    stats = _stats(node)
    assert 2 <= stats["batchStores"] <= 4  # 302 small files, 250 to a request
    objects = _objects(node.storage_dir)
    for path in tree.rglob("*"):
        if path.is_file():
            assert objects[sha1_file(path)] == path.read_bytes(), path
    assert not (tmp_path / "client-cache" / "sha1").exists()  # a store caches nothing here

    copy = tmp_path / "copy"
    loaded = cli("load-file", "-r", stored.stdout.strip(), "--dest", str(copy), env=env)
    assert loaded.returncode == 0, loaded
    assert {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()} == {
        p.relative_to(tree): p.read_bytes() for p in tree.rglob("*") if p.is_file()
    }


def test_an_older_node_without_the_routes_gets_one_request_per_file(
    make_node, start_proxy, tmp_path: Path
) -> None:
    node = make_node()
    tree = tmp_path / "tree"
    files = _tree(tree, 20, seed=1)
    port = start_proxy("old", node.port)
    transport = remote_transport(port, tmp_path / "cache", make_token(node, "batch-write", "write"))
    uri = store_folder(transport, tree)
    assert transport.batch_store_route is False
    assert _stats(node).get("batchStores", 0) == 0
    objects = _objects(node.storage_dir)
    assert all(objects[hashlib.sha1(d).hexdigest()] == d for d in files.values())
    assert uri.sha1 in objects


def test_an_answer_naming_another_hash_is_refused(make_node, start_proxy, tmp_path: Path) -> None:
    node = make_node()
    tree = tmp_path / "tree"
    _tree(tree, 10, seed=2)
    port = start_proxy("storehash", node.port)
    transport = remote_transport(port, tmp_path / "cache", make_token(node, "batch-write", "write"))
    with pytest.raises(IntegrityError) as caught:
        store_folder(transport, tree)
    assert "5" * 40 in str(caught.value) and "\n" not in str(caught.value)


# -- the node: /storeFiles --------------------------------------------------------------


def test_store_files_stores_each_object_in_order_as_a_pin(node) -> None:
    datas = [b"one", b"", b"three" * 1000, b"one"]
    answer = _post(node, "/storeFiles", data=_body(datas))
    assert answer.status_code == 200, answer.text
    items = answer.json()["stored"]
    assert [i["sha1"] for i in items] == [hashlib.sha1(d).hexdigest() for d in datas]
    objects = _objects(node.storage_dir)
    assert all(objects[hashlib.sha1(d).hexdigest()] == d for d in datas)
    usage = json.loads(requests.get(node.url + "/stats", headers=node.headers(), timeout=10).text)[
        "stats"
    ]
    assert usage["storeRequests"] == 4 and usage["batchStores"] == 1
    import sqlite3

    with sqlite3.connect(node.storage_dir / "kachery-index.sqlite") as db:
        origins = {row[0] for row in db.execute("SELECT origin FROM objects")}
    assert origins == {"pinned"}  # a store, never an evictable fetch


def _too_many() -> bytes:
    return _body([b""] * (wire.STORE_BATCH_MAX_FILES + 1))


def _too_large_total() -> bytes:
    count = wire.STORE_BATCH_MAX_BYTES // wire.STORE_BATCH_MAX_OBJECT_BYTES + 1
    return _body([bytes([i]) * wire.STORE_BATCH_MAX_OBJECT_BYTES for i in range(count)])


def _bad_hash() -> bytes:
    good = _body([b"kept before the bad one"], finished=False)
    bad = _frame(wire.batch_file_frame("0" * 40, 5)) + b"wrong"
    return good + bad + _body([b"never reached"])


HOSTILE: List[Tuple[str, Any, str, str]] = [
    ("too many objects", _too_many, "at most 1000 objects", "invalid"),
    (
        "an object over the limit",
        lambda: _frame(wire.batch_file_frame("1" * 40, MIB + 1)) + b"x" * (MIB + 1),
        "over the 1048576",
        "invalid",
    ),
    ("too many bytes", _too_large_total, "at most 16777216 bytes", "invalid"),
    ("a bad hash", _bad_hash, "expected " + "0" * 40, "integrity"),
    (
        "a truncated object",
        lambda: _frame(wire.batch_file_frame("2" * 40, 100)) + b"y" * 50,
        "ended in the middle of sha1://" + "2" * 40,
        "invalid",
    ),
    ("no finished frame", lambda: _body([b"unfinished"], finished=False), "without", "invalid"),
    ("not framed", lambda: b"hello, node", "not framed", "invalid"),
    ("a huge header", lambda: b"99999#" + b" " * 99999, "header frame of 99999", "invalid"),
    ("bytes after the end", lambda: _body([b"a"]) + b"more", "after the 'finished'", "invalid"),
    ("another frame type", lambda: _frame({"type": "progress"}), "not 'progress'", "invalid"),
    (
        "a size that is no count",
        lambda: _frame({"type": "file", "sha1": "3" * 40, "size": -1}),
        "count of bytes",
        "invalid",
    ),
    (
        "a bad sha1",
        lambda: _frame({"type": "file", "sha1": "../x", "size": 0}),
        "40 hex",
        "invalid",
    ),
    ("a frame that is no object", lambda: b"3#[1]", "JSON object", "invalid"),
]


@pytest.mark.parametrize("case, body, words, kind", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_store_files_refuses_hostile_bodies(
    node, case: str, body: Any, words: str, kind: str
) -> None:
    answer = _post(node, "/storeFiles", data=body())
    assert answer.status_code == 400, (case, answer.status_code, answer.text[:300])
    assert words in answer.text and answer.text.count("\n") == 1, (case, answer.text)
    assert answer.headers["KACHERY-ERROR-TYPE"] == kind, case
    # Objects received whole and verified before the fault may stay; nothing unverified,
    # nothing after the fault, no staging file.
    kept = _objects(node.storage_dir)
    assert hashlib.sha1(b"never reached").hexdigest() not in kept, case
    assert node.probe() is not None  # still up


def test_the_batch_routes_need_their_scope(node) -> None:
    read = {"KACHERY-CLIENT-AUTH-CODE": make_token(node, "reader", "read")}
    write = {"KACHERY-CLIENT-AUTH-CODE": make_token(node, "writer", "write")}
    refused = _post(node, "/storeFiles", read, data=_body([b"from a reader"]))
    assert refused.status_code == 403 and "needs 'write'" in refused.text
    assert _post(node, "/storeFiles", write, data=_body([b"from a writer"])).status_code == 200
    paths = {"localFilePaths": [str(node.storage_dir / "kachery-node-id")]}
    refused = _post(node, "/storeLocalFiles", write, json=paths)
    assert refused.status_code == 403 and "send the bytes instead" in refused.text
    assert _post(node, "/storeFiles", {}, data=_body([b"x"])).status_code == 403
    assert set(_objects(node.storage_dir)) == {hashlib.sha1(b"from a writer").hexdigest()}


# -- the node: /storeLocalFiles ---------------------------------------------------------


def test_store_local_files_answers_each_path_on_its_own(node, tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_bytes(b"small and readable")
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * (MIB + 1))
    paths = [
        str(small),
        str(tmp_path / "missing"),
        str(node.storage_dir / "kachery-node-id"),  # the node's own file: never read
        str(big),
        "/proc/self/environ",
        str(small),
    ]
    answer = _post(node, "/storeLocalFiles", json={"localFilePaths": paths})
    assert answer.status_code == 200, answer.text
    items = answer.json()["stored"]
    assert len(items) == len(paths)
    assert items[0]["sha1"] == items[5]["sha1"] == hashlib.sha1(small.read_bytes()).hexdigest()
    for i in (1, 2, 4):
        assert items[i]["errorType"] == "invalid" and "cannot read" in items[i]["error"], items[i]
    assert items[1]["error"].split("'")[2:] == items[2]["error"].split("'")[2:]  # same words
    assert items[3]["errorType"] == "invalid" and "over the 1048576" in items[3]["error"]
    assert set(_objects(node.storage_dir)) == {items[0]["sha1"]}

    for doc, words in [
        ({"localFilePaths": [str(small)] * (wire.STORE_BATCH_MAX_FILES + 1)}, "at most 1000"),
        ({"localFilePaths": ["relative/path"]}, "must be absolute"),
        ({"localFilePaths": [str(small), 7]}, "localFilePaths[1] must be a string"),
        ({"localFilePaths": "/etc/passwd"}, "must be a list"),
        ({"localFilePaths": ["/tmp/a\u0000b"]}, "NUL"),
    ]:
        refused = _post(node, "/storeLocalFiles", json=doc)
        assert refused.status_code == 400 and words in refused.text, (doc, refused.text)
    layout = StorageLayout(node.storage_dir)
    assert layout.object_path(items[0]["sha1"]).exists()
