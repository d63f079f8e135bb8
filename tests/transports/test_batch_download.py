"""Batches over the network backends, against real nodes: many small files in one request
(`POST /downloadFiles`) over `remote`, parallel loads over one gRPC channel, what a batch
does with cached, small, large and missing objects, hostile answers (tests/batch_proxy.py),
and older nodes without the route."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest
import requests
from conftest import free_port, sha1_file, write_random_file
from node_fixtures import NodeProcess, make_token, remote_transport
from proxies import proxy_launcher

from kachery_client.directories.operations import load_files, materialize
from kachery_core.content.uri import ContentUri, parse_any_uri, parse_uri
from kachery_core.errors import IntegrityError, KacheryError, NotFoundError, TransportError
from kachery_core.protocol import wire
from kachery_core.settings.config import resolve_config
from kachery_core.store.layout import StorageLayout
from kachery_transports.grpc import GrpcDaemonTransport

PROXY = str(Path(__file__).parent.parent / "batch_proxy.py")
LARGE = 20_000_001  # just over the manifest threshold


def _stats(node: NodeProcess) -> Dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    conn.request("GET", "/stats", headers=node.headers())
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return dict(doc["stats"])


def _store_on_node(node: NodeProcess, datas: List[bytes]) -> List[ContentUri]:
    uris = []
    for data in datas:
        answer = requests.post(node.url + "/store", data=data, headers=node.headers(), timeout=60)
        assert answer.status_code == 200, answer.text
        uris.append(ContentUri(answer.json()["sha1"]))
    return uris


def _small_files(count: int, seed: int = 0) -> List[bytes]:
    return [f"file {seed}-{i} ".encode() * (1 + i % 300) for i in range(count)]


def _all_verified(cache: Path) -> Set[str]:
    """The objects in a cache, each checked to hash to its name; nothing left in its tmp."""
    found = set()
    for path in (cache / "sha1").rglob("*") if (cache / "sha1").exists() else []:
        if path.is_file():
            assert sha1_file(path) == path.name, f"unverified bytes kept at {path}"
            found.add(path.name)
    leftovers = [p for p in (cache / "tmp").glob("*")] if (cache / "tmp").exists() else []
    assert leftovers == [], leftovers
    return found


@pytest.fixture
def start_proxy() -> Iterator:
    """tests/batch_proxy.py: start(mode, upstream_port) -> the proxy's port."""
    with proxy_launcher(PROXY) as start:
        yield start


# -- the node's route ------------------------------------------------------------------


def _frames(body: bytes) -> List[Tuple[dict, bytes]]:
    out = []
    while body:
        length, _, rest = body.partition(b"#")
        frame = json.loads(rest[: int(length)])
        body = rest[int(length) :]
        size = frame["size"] if frame["type"] == "file" else 0
        out.append((frame, body[:size]))
        body = body[size:]
    return out


def test_the_route_answers_each_object_in_order_within_its_bounds(node) -> None:
    small = _small_files(3)
    big = b"b" * (wire.BATCH_MAX_OBJECT_BYTES + 1)
    uris = _store_on_node(node, [*small, big])
    missing = "0" * 40
    asked = [uris[0].sha1, missing, uris[3].sha1, uris[1].sha1, uris[2].sha1]
    doc = {"files": [{"sha1": s} for s in asked]}
    answer = requests.post(
        node.url + "/downloadFiles", json=doc, headers=node.headers(), timeout=60
    )
    assert answer.status_code == 200
    frames = _frames(answer.content)
    assert [f.get("sha1") for f, _ in frames] == [*asked, None]
    assert [f["type"] for f, _ in frames] == [
        "file",
        "notFound",
        "notSent",
        "file",
        "file",
        "finished",
    ]
    assert frames[0][1] == small[0] and frames[3][1] == small[1] and frames[4][1] == small[2]
    assert frames[1][0]["errorType"] == "notFound"
    assert frames[2][0]["size"] == len(big)
    assert _stats(node)["batchDownloads"] == 1

    too_many = {"files": [{"sha1": missing}] * (wire.BATCH_MAX_FILES + 1)}
    refused = requests.post(
        node.url + "/downloadFiles", json=too_many, headers=node.headers(), timeout=60
    )
    assert refused.status_code == 400 and "at most" in refused.text
    bad = requests.post(
        node.url + "/downloadFiles",
        json={"files": [{"sha1": "../x"}]},
        headers=node.headers(),
        timeout=60,
    )
    assert bad.status_code == 400 and "files[0].sha1" in bad.text


# -- remote: batches --------------------------------------------------------------------


def test_load_dir_over_remote_goes_in_batches(make_node, cli, kenv, tmp_path: Path) -> None:
    node = make_node()
    token = make_token(node, "batch-write", "write")
    tree = tmp_path / "tree"
    for i, data in enumerate(_small_files(450)):
        folder = tree / f"d{i % 7}" / f"e{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.txt").write_bytes(data)
    (tree / "empty").write_bytes(b"")
    (tree / "same-as-f0.txt").write_bytes(_small_files(1)[0])  # one object, two places
    env = dict(
        kenv,
        KACHERY_TRANSPORT="remote",
        KACHERY_DAEMON_PORT=str(node.port),
        KACHERY_STORAGE_DIR=str(tmp_path / "uploader-cache"),
        KACHERY_AUTH_TOKEN=token,
    )
    stored = cli("store-file", "-r", str(tree), env=env)
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()

    cache = tmp_path / "laptop-cache"
    before = _stats(node)
    loaded = cli(
        "load-file",
        "-r",
        uri,
        "--dest",
        str(tmp_path / "copy"),
        env=dict(env, KACHERY_STORAGE_DIR=str(cache)),
    )
    assert loaded.returncode == 0, loaded
    for path in tree.rglob("*"):
        if path.is_file():
            copy = tmp_path / "copy" / path.relative_to(tree)
            assert copy.read_bytes() == path.read_bytes(), copy
    after = _stats(node)
    batches = after.get("batchDownloads", 0) - before.get("batchDownloads", 0)
    assert 3 <= batches <= 6  # 452 small objects, ~200 to a request: not one request per file
    assert len(_all_verified(cache)) == 451  # the files' objects (the directory is read, not kept)


def test_a_batch_mixes_cached_small_large_and_missing_objects(make_node, tmp_path: Path) -> None:
    node = make_node()
    big = write_random_file(tmp_path / "big.bin", LARGE, seed=3)
    small = _small_files(40, seed=1)
    uris = _store_on_node(node, small)
    with open(big, "rb") as f:
        answer = requests.post(node.url + "/store", data=f, headers=node.headers(), timeout=120)
    big_sha1, manifest = answer.json()["sha1"], answer.json()["manifestSha1"]
    big_uri = parse_uri(f"sha1://{big_sha1}/big.bin?manifest={manifest}")

    cache = tmp_path / "cache"
    transport = remote_transport(node.port, cache, make_token(node, "batch-read", "read"))
    transport.load_file(uris[5])  # one already cached
    calls: List[Tuple[int, int]] = []
    threads: Set[str] = set()

    def progress(files: int, size: int) -> None:
        calls.append((files, size))
        threads.add(threading.current_thread().name)

    asked = [*uris, big_uri, uris[0]]
    sizes = [len(d) for d in small] + [LARGE, len(small[0])]
    paths = load_files(transport, asked, progress, sizes)
    assert [sha1_file(Path(p)) for p in paths] == [u.sha1 for u in asked]
    assert all(Path(p).parent.parent.parent.parent.parent == cache for p in paths)
    assert calls[-1] == (len(asked), sum(sizes))
    assert len(threads) > 1  # the large file and the batches ran side by side
    assert StorageLayout(cache).object_path(manifest).exists()  # fetched with the large file

    missing = ContentUri("7" * 40)
    more = _store_on_node(node, _small_files(5, seed=2))
    with pytest.raises(NotFoundError) as caught:
        load_files(
            transport, [*more, missing], None, [len(d) for d in _small_files(5, seed=2)] + [10]
        )
    assert missing.sha1 in str(caught.value) and node.url in str(caught.value)
    _all_verified(cache)


def test_a_size_that_differs_from_the_directory_is_refused(make_node, tmp_path: Path) -> None:
    node = make_node()
    uris = _store_on_node(node, [b"twelve bytes"])
    cache = tmp_path / "cache"
    transport = remote_transport(node.port, cache, make_token(node, "batch-read", "read"))
    with pytest.raises(IntegrityError) as caught:
        load_files(transport, uris, None, [13])
    assert "announced 12 bytes" in str(caught.value) and node.url in str(caught.value)
    assert _all_verified(cache) == set()


# -- hostile and older nodes ------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, error, words",
    [
        ("wrong", IntegrityError, "do not hash"),
        ("extra", TransportError, "not framed"),
        ("truncate", TransportError, ""),
        ("oversize", IntegrityError, "announced"),
        ("stranger", TransportError, "not asked for"),
        ("unfinished", TransportError, "without finishing"),
    ],
)
def test_a_dishonest_batch_answer_keeps_nothing_unverified(
    make_node, start_proxy, tmp_path: Path, mode: str, error: type, words: str
) -> None:
    node = make_node()
    small = _small_files(30, seed=4)
    uris = _store_on_node(node, small)
    port = start_proxy(mode, node.port)
    cache = tmp_path / "cache"
    transport = remote_transport(port, cache, make_token(node, "batch-read", "read"))
    with pytest.raises(KacheryError) as caught:
        load_files(transport, uris, None, [len(d) for d in small])
    assert isinstance(caught.value, error), caught.value
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and words in message and "\n" not in message, message
    kept = _all_verified(cache)
    assert kept <= {u.sha1 for u in uris}


def test_an_older_node_without_the_route_is_asked_one_by_one(
    make_node, start_proxy, tmp_path: Path
) -> None:
    node = make_node()
    small = _small_files(25, seed=5)
    uris = _store_on_node(node, small)
    port = start_proxy("old", node.port)
    cache = tmp_path / "cache"
    transport = remote_transport(port, cache, make_token(node, "batch-read", "read"))
    paths = load_files(transport, uris, None, [len(d) for d in small])
    assert [Path(p).read_bytes() for p in paths] == small
    assert transport.batch_route is False
    assert _stats(node).get("batchDownloads", 0) == 0
    assert _all_verified(cache) == {u.sha1 for u in uris}


# -- grpc: parallel loads over the one channel -------------------------------------------


def test_load_dir_over_grpc_runs_on_several_threads(make_node, tmp_path: Path) -> None:
    grpc_port = free_port()
    node = make_node("--grpc-port", str(grpc_port))
    tree = tmp_path / "tree"
    for i, data in enumerate(_small_files(60, seed=6)):
        (tree / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 4}" / f"f{i}").write_bytes(data)
    settings = {
        "daemon_host": "127.0.0.1",
        "grpc_port": grpc_port,
        "storage_dir": str(tmp_path / "cache"),
        "auth_token": make_token(node, "batch-write", "write"),
    }
    transport = GrpcDaemonTransport(resolve_config(settings, explicit_source="test"))
    from kachery_client.directories.operations import store_folder

    uri = store_folder(transport, tree)
    transport.close()
    transport = GrpcDaemonTransport(
        resolve_config(dict(settings, storage_dir=str(tmp_path / "cache2")), explicit_source="test")
    )
    opened: List[object] = []
    real_connect = transport.node.connect

    def counting_connect() -> object:
        opened.append(transport.node._channel)
        return real_connect()

    transport.node.connect = counting_connect  # type: ignore[method-assign]
    threads: Set[str] = set()
    materialize(
        transport,
        parse_any_uri(str(uri)),  # type: ignore[arg-type]
        tmp_path / "copy",
        progress=lambda files, size: threads.add(threading.current_thread().name),
    )
    for path in tree.rglob("*"):
        if path.is_file():
            assert (tmp_path / "copy" / path.relative_to(tree)).read_bytes() == path.read_bytes()
    assert len(threads) > 1
    channels = {id(c) for c in opened if c is not None}
    assert len(channels) == 1  # every load over the one channel
