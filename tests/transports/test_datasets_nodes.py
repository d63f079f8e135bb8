"""Directories (`sha1dir://`) end to end on every node-backed backend: real `kachery-daemon`
processes on loopback, real `kachery-client` subprocesses, and the Python API.

One node per backend serves the whole module (a fresh storage each, so a store really
sends every byte); `remote` and `grpc` clients load into an empty cache of their own, so
every byte of a load crosses the socket too.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, NamedTuple

import pytest
from conftest import CliResult, command, sha1_file
from dataset_helpers import (
    BIG,
    assert_same_tree,
    backend_env,
    make_token,
    make_tree,
    objects,
    one_error_line,
    start_grpc_node,
)
from node_fixtures import NodeProcess

from kachery_core.store.layout import StorageLayout

BACKENDS = ["http", "remote", "grpc"]


class Shared(NamedTuple):
    tree: Path
    local_uri: str
    """What the embedded backend gives for the same tree: the canonical URI."""
    tmp: Path


class Stored(NamedTuple):
    backend: str
    node: NodeProcess
    uri: str


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    import kachery_client as kc

    tmp = tmp_path_factory.mktemp("datasets-nodes")
    tree = make_tree(tmp / "recording")
    with kc.Client("local", storage_dir=str(tmp / "embedded")) as local:
        local_uri = local.store_dir(tree)
    return Shared(tree, local_uri, tmp)


@pytest.fixture(scope="module", params=BACKENDS)
def stored(request: Any, shared: Shared) -> Iterator[Stored]:
    """A node of the backend's own, and the tree stored through it with `store-file -r`."""
    backend = request.param
    node = start_grpc_node(shared.tmp / backend)
    try:
        env = backend_env(backend, node, shared.tmp / backend / "store-cache")
        done = subprocess.run(
            [command("kachery-client"), "store-file", "-r", str(shared.tree)],
            capture_output=True, env=env, timeout=120,
        )  # fmt: skip
        result = CliResult(done)
        assert result.returncode == 0, result
        yield Stored(backend, node, result.stdout.strip())
    finally:
        node.stop()


def _env(stored: Stored, tmp_path: Path, name: str = "cache") -> Dict[str, str]:
    return backend_env(stored.backend, stored.node, tmp_path / name)


def test_store_r_gives_the_canonical_uri_and_stores_every_object(
    stored: Stored, shared: Shared
) -> None:
    assert stored.uri == shared.local_uri
    assert stored.uri.startswith("sha1dir://") and stored.uri.endswith(".recording")
    layout = StorageLayout(stored.node.storage_dir)
    for path in shared.tree.rglob("*"):
        if path.is_file():
            assert layout.object_path(sha1_file(path)).exists(), path  # on the node
    assert layout.object_path(stored.uri[10:50]).exists()  # the directory object too
    doc = json.loads(layout.object_path(stored.uri[10:50]).read_bytes())
    big = doc["dirs"]["raw"]["files"]["big.bin"]
    assert big["size"] == BIG and layout.object_path(big["manifestSha1"]).exists()
    assert "manifestSha1" not in doc["files"]["params.json"]
    assert doc["dirs"]["empty"] == {"dirs": {}, "files": {}}


def test_load_r_from_an_empty_cache_then_paths_inside(
    stored: Stored, shared: Shared, cli: Any, tmp_path: Path
) -> None:
    env = _env(stored, tmp_path)
    cache = Path(env["KACHERY_STORAGE_DIR"])
    if stored.backend != "http":
        assert objects(cache) == []  # nothing here yet: every byte comes over the socket
    dest = tmp_path / "out"
    dest.mkdir()  # an empty folder is taken as it is
    loaded = cli("load-file", "-r", stored.uri, "--dest", str(dest), env=env)
    assert loaded.returncode == 0, loaded
    assert loaded.stdout.strip() == str(dest)
    assert_same_tree(shared.tree, dest)
    assert (dest / "empty").is_dir()
    if stored.backend != "http":
        assert len(objects(cache)) >= 7  # the files, the manifest and the directory object
    assert [p.name for p in tmp_path.iterdir() if ".kachery-" in p.name] == []  # no staging

    sub = tmp_path / "only-raw"
    part = cli("load-file", "-r", stored.uri + "/raw", "--dest", str(sub), "--copy", env=env)
    assert part.returncode == 0, part
    assert_same_tree(shared.tree / "raw", sub)
    assert os.access(sub / "deep" / "er" / "leaf.txt", os.W_OK)  # --copy: writable copies

    again = cli("load-file", "-r", stored.uri, "--dest", str(dest), env=env)
    assert "not empty" in one_error_line(again)

    # paths inside: the same cache (the big file has crossed the socket once already)
    listed = cli("ls", "-r", stored.uri, env=env)
    assert listed.returncode == 0, listed
    names = [line.split("  ")[0].strip() for line in listed.stdout.splitlines()]
    assert names == [
        "empty/",
        "notes with space.txt",
        "params.json",
        "raw/",
        "raw/big.bin",
        "raw/deep/",
        "raw/deep/er/",
        "raw/deep/er/leaf.txt",
        "raw/zero.bin",
        "résumé.txt",
    ]
    as_json = json.loads(cli("ls", stored.uri, "--json", env=env).stdout)
    by_name = {e["name"]: e for e in as_json}
    assert by_name["raw/"] == {
        "name": "raw/",
        "type": "dir",
        "size": BIG + len("a leaf 0\n"),
        "uri": stored.uri + "/raw",
    }
    assert by_name["params.json"]["uri"] == "sha1://{}/params.json".format(
        sha1_file(shared.tree / "params.json")
    )

    leaf = cli("cat-file", stored.uri + "/raw/deep/er/leaf.txt", env=env)
    assert leaf.returncode == 0 and leaf.stdout == "a leaf 0\n", leaf
    spaced = cli("cat-file", stored.uri + "/notes%20with%20space.txt", env=env)
    assert spaced.stdout_bytes == (shared.tree / "notes with space.txt").read_bytes(), spaced

    loaded = cli("load-file", stored.uri + "/raw/big.bin", env=env)
    assert loaded.returncode == 0, loaded
    assert sha1_file(Path(loaded.stdout.strip())) == sha1_file(shared.tree / "raw" / "big.bin")
    copy = tmp_path / "leaf-copy.txt"
    to_dest = cli("load-file", stored.uri + "/raw/deep/er/leaf.txt", "--dest", str(copy), env=env)
    assert to_dest.returncode == 0 and copy.read_text() == "a leaf 0\n", to_dest

    a_dir = cli("load-file", stored.uri + "/raw", env=env)
    assert "is a directory, not a file" in one_error_line(a_dir)
    missing = cli("ls", stored.uri + "/raw/nope", env=env)
    assert "'raw/nope'" in one_error_line(missing)


def test_several_paths_in_one_store_file(
    stored: Stored, shared: Shared, cli: Any, tmp_path: Path
) -> None:
    env = _env(stored, tmp_path)
    first, last = tmp_path / "first.txt", tmp_path / "last.txt"
    first.write_text("first\n")
    last.write_text("last\n")
    other = tmp_path / "other"
    (other / "inner").mkdir(parents=True)
    (other / "inner" / "x.txt").write_text("x\n")
    result = cli("store-file", "-r", str(first), str(shared.tree), str(last), str(other), env=env)
    assert result.returncode == 0, result
    uris = result.stdout.split()
    assert len(uris) == 4, result
    assert uris[0] == f"sha1://{sha1_file(first)}/first.txt"
    assert uris[1] == shared.local_uri
    assert uris[2] == f"sha1://{sha1_file(last)}/last.txt"
    assert uris[3].startswith("sha1dir://") and uris[3].endswith(".other")
    assert cli("cat-file", uris[3] + "/inner/x.txt", env=env).stdout == "x\n"


def test_python_api(
    stored: Stored, shared: Shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kenv: Any
) -> None:
    import kachery_client as kc

    for key, value in _env(stored, tmp_path).items():
        if key.startswith("KACHERY_"):
            monkeypatch.setenv(key, value)
    with kc.Client() as client:
        assert client.selection.name == stored.backend
        assert client.store_dir(shared.tree) == shared.local_uri
        assert client.store_dir(shared.tree, "renamed") == shared.local_uri.replace(
            ".recording", ".renamed"
        )
        doc = client.read_dir(stored.uri)
        assert sorted(doc["files"]) == ["notes with space.txt", "params.json", "résumé.txt"]
        assert client.read_dir(stored.uri + "/raw/deep") == {
            "dirs": {"er": {"dirs": {}, "files": {"leaf.txt": doc["dirs"]["raw"]["dirs"]["deep"]
                                                  ["dirs"]["er"]["files"]["leaf.txt"]}}},
            "files": {},
        }  # fmt: skip
        assert client.load_bytes(stored.uri + "/raw/deep/er/leaf.txt") == b"a leaf 0\n"
        assert (
            client.load_bytes(stored.uri + "/raw/big.bin", 19_999_990, 20_000_010)
            == ((shared.tree / "raw" / "big.bin").read_bytes()[19_999_990:20_000_010])
        )
        assert client.load_json(stored.uri + "/params.json") == {"rate": 30000, "seed": 0}
        seen = []
        dest = client.load_dir(
            stored.uri, tmp_path / "api-out", progress=lambda f, b: seen.append((f, b))
        )
        assert dest == str(tmp_path / "api-out")
        assert_same_tree(shared.tree, tmp_path / "api-out")
        assert seen and seen[-1] == (6, sum(
            p.stat().st_size for p in shared.tree.rglob("*") if p.is_file()
        ))  # fmt: skip
        small = [shared.tree / "params.json", shared.tree / "raw" / "deep" / "er" / "leaf.txt"]
        assert client.store_files(small) == [f"sha1://{sha1_file(p)}/{p.name}" for p in small]


def test_a_directory_object_larger_than_a_read_block(
    stored: Stored, cli: Any, tmp_path: Path
) -> None:
    """A directory object of several MiB arrives in many pieces (gRPC and HTTP chunks): it is
    read to its end, not cut at the first piece."""
    leaf_sha1 = hashlib.sha1(b"a leaf 0\n").hexdigest()
    files = {f"f{i:06d}.txt": {"sha1": leaf_sha1, "size": 9} for i in range(40_000)}
    data = json.dumps({"dirs": {}, "files": files}, sort_keys=True, separators=(",", ":"))
    path = tmp_path / "many.json"
    path.write_text(data)
    assert path.stat().st_size > 2_500_000
    http_env = backend_env("http", stored.node, tmp_path / "unused")
    put = cli("store-file", str(path), env=http_env)  # stored honestly on the node
    assert put.returncode == 0, put
    uri = f"sha1dir://{put.stdout.strip()[7:47]}.many"
    env = _env(stored, tmp_path)  # an empty cache: the object comes over the socket
    one = cli("cat-file", uri + "/f039999.txt", env=env)
    assert one.stdout == "a leaf 0\n", one


@pytest.mark.parametrize("stored", ["remote", "grpc"], indirect=True)  # http: no tokens
def test_a_read_only_token_lists_and_loads_but_cannot_store(
    stored: Stored, shared: Shared, cli: Any, tmp_path: Path
) -> None:
    token = make_token(stored.node, "read")
    env = backend_env(stored.backend, stored.node, tmp_path / "cache", token=token)
    assert cli("ls", "-r", stored.uri, env=env).returncode == 0
    dest = tmp_path / "out"
    loaded = cli("load-file", "-r", stored.uri, "--dest", str(dest), env=env)
    assert loaded.returncode == 0, loaded
    assert_same_tree(shared.tree, dest)

    other = tmp_path / "new-tree"
    (other / "sub").mkdir(parents=True)
    (other / "sub" / "new.txt").write_text("never stored\n")
    refused = cli("store-file", "-r", str(other), env=env)
    line = one_error_line(refused)
    assert "scope 'read'" in line and "storing" in line, line
    assert refused.stdout == ""
    new_sha1 = sha1_file(other / "sub" / "new.txt")
    assert not StorageLayout(stored.node.storage_dir).object_path(new_sha1).exists()


@pytest.mark.parametrize("stored", ["http"], indirect=True)  # only a node on this machine
def test_link_file_r_links_the_files_on_the_node(
    stored: Stored, shared: Shared, cli: Any, tmp_path: Path
) -> None:
    tree = tmp_path / "linked"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "data.txt").write_text("linked, not copied\n")
    (tree / "top.txt").write_text("top\n")
    env = _env(stored, tmp_path)
    linked = cli("link-file", "-r", str(tree), env=env)
    assert linked.returncode == 0, linked
    uri = linked.stdout.strip()
    import kachery_client as kc

    with kc.Client("local", storage_dir=str(tmp_path / "embedded")) as local:
        assert uri == local.store_dir(tree)  # the same tree, the same URI
    layout = StorageLayout(stored.node.storage_dir)
    data_sha1 = sha1_file(tree / "sub" / "data.txt")
    record = Path(str(layout.object_path(data_sha1)) + ".link")
    assert record.exists() and not layout.object_path(data_sha1).exists()
    assert json.loads(record.read_text())["path"] == str((tree / "sub" / "data.txt").resolve())
    dest = tmp_path / "out"
    loaded = cli("load-file", "-r", uri, "--dest", str(dest), env=env)
    assert loaded.returncode == 0, loaded
    assert_same_tree(tree, dest)
    (tree / "sub" / "data.txt").write_text("edited after linking\n")  # the link is now stale
    stale = cli("load-file", "-r", uri, "--dest", str(tmp_path / "out2"), "--copy", env=env)
    assert stale.returncode == 1 and not (tmp_path / "out2").exists(), stale
