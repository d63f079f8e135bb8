"""Lazy reads through a real node over `remote` (and `grpc`): chunks travel only when touched,
are cached as ordinary objects, and a chunk altered on the way is refused whole.

Transfers are counted by the node itself (`downloadedBytes` in /stats).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from pathlib import Path

import pytest
from conftest import write_random_file
from node_fixtures import make_token
from proxies import proxy_launcher

import kachery_client as kc
from kachery_client.lazy import pieces
from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.content.uri import parse_uri
from kachery_core.store.layout import StorageLayout

SIZE = 55_000_000  # chunks of 20,000,000, 20,000,000 and 15,000,000 bytes
TAMPER = str(Path(__file__).resolve().parents[1] / "chunk_tamper_proxy.py")


def _sent(node) -> int:
    """Bytes of objects the node has sent so far."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    conn.request("GET", "/stats", headers=node.headers())
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return int(doc["stats"].get("downloadedBytes", 0))


@pytest.fixture
def stored(make_node, cli, kenv, tmp_path: Path):
    """A node holding a 55 MB file, and a way to make clients over `remote` to it."""
    node = make_node()
    src = write_random_file(tmp_path / "big.bin", SIZE, seed=5)
    node_client = kc.Client(backend="local", storage_dir=str(node.storage_dir))
    uri = node_client.store_file(src)
    token = make_token(node, "lazy")
    manifest = parse_uri(uri).manifest_sha1
    assert manifest is not None
    manifest_size = StorageLayout(node.storage_dir).object_path(manifest).stat().st_size
    pieces._checked.clear()

    def client(cache: str = "laptop-cache", port: int = node.port) -> kc.Client:
        return kc.Client(
            backend="remote",
            daemon_port=port,
            storage_dir=str(tmp_path / cache),
            auth_token=token,
        )

    return node, src.read_bytes(), uri, manifest_size, client


def test_random_reads_fetch_only_the_chunks_they_touch_and_once(stored) -> None:
    node, data, uri, manifest_size, client = stored
    rng = random.Random(7)
    offsets = [rng.randrange(0, 2 * CHUNK_SIZE - 65536) for _ in range(100)]  # chunks 0, 1
    before = _sent(node)
    with client() as c, c.open(uri) as f:
        for offset in offsets:
            f.seek(offset)
            assert f.read(65536) == data[offset : offset + 65536]
    assert _sent(node) - before == manifest_size + 2 * CHUNK_SIZE  # never chunk 2
    again = _sent(node)
    with client() as c, c.open(uri) as f:  # a new client, the same cache: nothing travels
        for offset in offsets:
            f.seek(offset)
            assert f.read(65536) == data[offset : offset + 65536]
    assert _sent(node) == again


def test_chunks_are_ordinary_objects_in_the_client_cache(stored, tmp_path: Path) -> None:
    node, data, uri, _, client = stored
    with client() as c, c.open(uri) as f:
        f.seek(CHUNK_SIZE + 10)
        assert f.read(10) == data[CHUNK_SIZE + 10 : CHUNK_SIZE + 20]
    chunk_sha1 = __import__("hashlib").sha1(data[CHUNK_SIZE : 2 * CHUNK_SIZE]).hexdigest()
    whole = parse_uri(uri).sha1
    chunk_uri = f"sha1://{chunk_sha1}?chunkOf={whole}~{CHUNK_SIZE}~{2 * CHUNK_SIZE}"
    before = _sent(node)
    with client() as c:
        assert c.load_bytes(chunk_uri, 0, 5) == data[CHUNK_SIZE : CHUNK_SIZE + 5]
    assert _sent(node) == before  # the chunk is found in the cache by its own name
    assert StorageLayout(tmp_path / "laptop-cache").object_path(chunk_sha1).exists()


def test_concurrent_readers_in_one_process_fetch_a_chunk_once(stored) -> None:
    node, data, uri, manifest_size, client = stored
    before = _sent(node)
    barrier = threading.Barrier(4)
    errors = []

    def reader(c: kc.Client) -> None:
        try:
            with c.open(uri) as f:
                barrier.wait()
                f.seek(CHUNK_SIZE + 1000)
                assert f.read(1000) == data[CHUNK_SIZE + 1000 : CHUNK_SIZE + 2000]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with client() as c:
        threads = [threading.Thread(target=reader, args=(c,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert _sent(node) - before == manifest_size + CHUNK_SIZE


def test_a_sequential_read_returns_every_byte(stored) -> None:
    node, data, uri, manifest_size, client = stored
    before = _sent(node)
    with client() as c, c.open(uri) as f:
        got = bytearray()
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            got += block
    assert got == data
    assert _sent(node) - before == manifest_size + SIZE  # each chunk once, prefetched or not


def test_a_chunk_altered_on_the_way_is_refused_with_none_of_its_bytes(stored, tmp_path) -> None:
    node, data, uri, _, client = stored
    with proxy_launcher(TAMPER) as start:
        port = start(node.port, CHUNK_SIZE)  # flips one byte of chunk 1
        with client(port=port) as c, c.open(uri) as f:
            assert f.read(100) == data[:100]
            f.seek(CHUNK_SIZE - 50)
            buffer = bytearray(100)
            with pytest.raises(kc.IntegrityError) as caught:
                f.readinto(buffer)
            assert bytes(buffer[50:]) == bytes(50)  # nothing of chunk 1 was given
            f.seek(2 * CHUNK_SIZE + 3)
            assert f.read(10) == data[2 * CHUNK_SIZE + 3 : 2 * CHUNK_SIZE + 13]
    message = str(caught.value)
    assert uri in message and f"chunk 1 (bytes {CHUNK_SIZE}-{2 * CHUNK_SIZE}" in message
    chunk_sha1 = __import__("hashlib").sha1(data[CHUNK_SIZE : 2 * CHUNK_SIZE]).hexdigest()
    assert not StorageLayout(tmp_path / "laptop-cache").object_path(chunk_sha1).exists()
    assert list((tmp_path / "laptop-cache" / "tmp").glob("*")) == []  # no staging left
    with client() as c, c.open(uri) as f:  # straight to the node: the same chunk reads fine
        f.seek(CHUNK_SIZE)
        assert f.read(100) == data[CHUNK_SIZE : CHUNK_SIZE + 100]


def test_grpc_reads_chunks_over_its_wire(make_node, kenv, tmp_path: Path) -> None:
    from conftest import free_port

    grpc_port = free_port()
    node = make_node("--grpc-port", str(grpc_port))
    src = write_random_file(tmp_path / "big.bin", 45_000_000, seed=9)
    data = src.read_bytes()
    uri = kc.Client(backend="local", storage_dir=str(node.storage_dir)).store_file(src)
    cache = tmp_path / "grpc-cache"
    with kc.Client(
        backend="grpc",
        grpc_port=grpc_port,
        storage_dir=str(cache),
        auth_code_file=str(node.storage_dir / "client-auth"),
    ) as c:
        with c.open(uri) as f:
            f.seek(CHUNK_SIZE + 7)
            assert f.read(1000) == data[CHUNK_SIZE + 7 : CHUNK_SIZE + 1007]
        whole = parse_uri(uri).sha1
        assert not StorageLayout(cache).object_path(whole).exists()  # only the chunk came
        chunk_sha1 = __import__("hashlib").sha1(data[CHUNK_SIZE : 2 * CHUNK_SIZE]).hexdigest()
        assert StorageLayout(cache).object_path(chunk_sha1).exists()
        before = _sent(node)
        path = c.load_file(uri)  # then the whole file: only the chunks still missing travel
        assert _sent(node) - before == len(data) - CHUNK_SIZE
        assert Path(path).read_bytes() == data


RSS_SCRIPT = """
import hashlib, random, resource, sys
import kachery_client as kc
client = kc.Client(backend="remote", daemon_port=int(sys.argv[2]), storage_dir=sys.argv[3],
                   auth_token=sys.argv[4])
import kachery_client.lazy.file  # warm up: imports and the connection, no object read
client.transport.node_info()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
digest = hashlib.sha1()
with client.open(sys.argv[1]) as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    rng = random.Random(1)
    for _ in range(50):
        f.seek(rng.randrange(f.size))
        f.read(65536)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(digest.hexdigest(), (after - before) // 1024)
"""


def test_client_memory_stays_flat_while_reading_a_large_file(stored, tmp_path: Path) -> None:
    import hashlib
    import subprocess
    import sys

    node, data, uri, _, client = stored
    with client() as c:
        token = c.config.auth_token
    out = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, uri, str(node.port), str(tmp_path / "rss-cache"), token],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    digest, grown_mib = out.stdout.split()
    assert digest == hashlib.sha1(data).hexdigest()
    assert int(grown_mib) < 24, f"RSS grew {grown_mib} MiB reading {SIZE} bytes"


def test_h5py_reads_one_dataset_fetching_only_the_chunks_that_hold_it(
    make_node, cli, kenv, tmp_path: Path
) -> None:
    h5py = pytest.importorskip("h5py", reason="h5py has no wheel for this Python")
    import numpy as np

    node = make_node()
    path = tmp_path / "session.h5"
    with h5py.File(path, "w") as f:  # default settings: contiguous data, metadata up front
        f["raw"] = np.random.default_rng(0).integers(0, 255, 50_000_000, dtype="u1")
        f["units/rates"] = np.arange(125_000, dtype="f8")  # 1 MB, after the 50 MB
    uri = kc.Client(backend="local", storage_dir=str(node.storage_dir)).store_file(path)
    manifest = parse_uri(uri).manifest_sha1
    assert manifest is not None
    manifest_size = StorageLayout(node.storage_dir).object_path(manifest).stat().st_size
    with h5py.File(path, "r") as f:
        offset = f["units/rates"].id.get_offset()
    touched = {0, offset // CHUNK_SIZE, (offset + 1_000_000 - 1) // CHUNK_SIZE}
    sizes = [min(CHUNK_SIZE, path.stat().st_size - i * CHUNK_SIZE) for i in sorted(touched)]
    before = _sent(node)
    with kc.Client(
        backend="remote",
        daemon_port=node.port,
        storage_dir=str(tmp_path / "laptop-cache"),
        auth_token=make_token(node, "lazy"),
    ) as c, c.open(uri) as raw, h5py.File(raw, "r") as f:
        assert f["units/rates"][124_999] == 124_999.0
        assert f["units/rates"][:].sum() == np.arange(125_000, dtype="f8").sum()
    assert _sent(node) - before == manifest_size + sum(sizes)  # not the 50 MB before it
    assert len(touched) <= 3


def test_load_file_after_a_lazy_read_fetches_only_the_missing_chunks(stored) -> None:
    import hashlib

    node, data, uri, manifest_size, client = stored
    with client() as c:
        with c.open(uri) as f:
            f.seek(CHUNK_SIZE)
            assert f.read(10) == data[CHUNK_SIZE : CHUNK_SIZE + 10]
        before = _sent(node)
        path = c.load_file(uri)
    assert _sent(node) - before == SIZE - CHUNK_SIZE  # chunks 0 and 2; the manifest is cached
    assert hashlib.sha1(Path(path).read_bytes()).hexdigest() == parse_uri(uri).sha1
