"""Directories through a channel: node A stores a tree and uploads it, node B (which holds
none of its objects) lists and loads it, every object (the directory object and a file
with a manifest included) fetched from a real SeaweedFS S3 store on loopback."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from conftest import sha1_file
from dataset_helpers import BIG, assert_same_tree, make_tree, objects
from seaweed import SeaweedS3, running_s3

from kachery_core.store.layout import StorageLayout

BUCKET = "kachery-datasets"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with running_s3(tmp_path_factory.mktemp("seaweed"), BUCKET) as server:
        yield server


def _node(s3: SeaweedS3, make_node: Any, tmp_path: Path, name: str, prefix: str) -> Any:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        "[channels.lab]\n"
        f'bucket = "{BUCKET}"\nprefix = "{prefix}"\n'
        f'endpoint_url = "{s3.endpoint_url}"\nregion = "us-east-1"\n'
    )
    return make_node("--config", str(config))


def _env(kenv: Dict[str, str], node: Any) -> Dict[str, str]:
    """A user of the node's machine: the http backend, storage shared."""
    return dict(kenv, KACHERY_DAEMON_PORT=str(node.port), KACHERY_STORAGE_DIR=str(node.storage_dir))


def _stats(node: Any) -> Dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    conn.request("GET", "/stats", headers=node.headers())
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return dict(doc["stats"])


def _keys(s3: SeaweedS3, prefix: str) -> List[str]:
    found = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"][len(prefix) :] for item in found)


def _object_keys(storage: Path) -> List[str]:
    return sorted(str(p.relative_to(storage)) for p in objects(storage))


def _expected_objects(tree: Path, dir_sha1: str, big_manifest: str) -> List[str]:
    hashes = {sha1_file(p) for p in tree.rglob("*") if p.is_file()} | {dir_sha1, big_manifest}
    return sorted(str(StorageLayout(Path(".")).object_path(h)) for h in hashes)


def test_a_stores_and_uploads_a_tree_b_loads_it(
    s3: SeaweedS3, make_node: Any, kenv: Dict[str, str], cli: Any, tmp_path: Path
) -> None:
    kenv.update(s3.credentials)
    prefix = "stored-and-uploaded/"
    a = _node(s3, make_node, tmp_path, "a", prefix)
    b = _node(s3, make_node, tmp_path, "b", prefix)
    tree = make_tree(tmp_path / "session")

    stored = cli("store-file", "-r", str(tree), "--upload-to-channel", "lab", env=_env(kenv, a))
    assert stored.returncode == 0, stored
    assert "uploaded to channel lab" in stored.stderr
    uri = stored.stdout.strip()
    dir_sha1 = uri[10:50]
    doc = json.loads(StorageLayout(a.storage_dir).object_path(dir_sha1).read_bytes())
    manifest = doc["dirs"]["raw"]["files"]["big.bin"]["manifestSha1"]
    expected = _expected_objects(tree, dir_sha1, manifest)
    assert _keys(s3, prefix) == expected  # every object in the bucket, as in a storage dir
    assert objects(b.storage_dir) == []  # B has none of them

    dest = tmp_path / "on-b"
    loaded = cli("load-file", "-r", uri, "--dest", str(dest), "--channel", "lab", env=_env(kenv, b))
    assert loaded.returncode == 0, loaded
    assert_same_tree(tree, dest)
    assert _object_keys(b.storage_dir) == expected  # each came through the channel
    assert _stats(b)["channelBytesDownloaded"] >= BIG

    listed = cli("ls", "-r", uri, "--channel", "lab", env=_env(kenv, b))
    assert listed.returncode == 0 and "raw/big.bin" in listed.stdout, listed


def test_upload_a_stored_tree_then_b_lists_and_loads_it(
    s3: SeaweedS3, make_node: Any, kenv: Dict[str, str], cli: Any, tmp_path: Path
) -> None:
    kenv.update(s3.credentials)
    prefix = "uploaded-later/"
    a = _node(s3, make_node, tmp_path, "a", prefix)
    b = _node(s3, make_node, tmp_path, "b", prefix)
    tree = tmp_path / "small-tree"
    (tree / "x" / "y").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "x" / "y" / "deep.txt").write_text("deep\n")
    (tree / "top.txt").write_text("top\n")

    stored = cli("store-file", "-r", str(tree), env=_env(kenv, a))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    assert _keys(s3, prefix) == []
    uploaded = cli("upload", uri, "--channel", "lab", env=_env(kenv, a))
    assert uploaded.returncode == 0, uploaded
    assert len(_keys(s3, prefix)) == 3  # two files and the directory object

    listed = cli("ls", "-r", uri, "--channel", "lab", env=_env(kenv, b))  # the object first
    assert listed.returncode == 0, listed
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "empty/", "top.txt", "x/", "x/y/", "x/y/deep.txt",
    ]  # fmt: skip
    dest = tmp_path / "on-b"
    loaded = cli("load-file", "-r", uri, "--dest", str(dest), "--channel", "lab", env=_env(kenv, b))
    assert loaded.returncode == 0, loaded
    assert_same_tree(tree, dest)
    assert cli("cat-file", uri + "/x/y/deep.txt", env=_env(kenv, b)).stdout == "deep\n"
