"""Copies in a channel's bucket: a corrupt manifest is named, uploading again repairs a
corrupt copy, a refused copy is not downloaded again, chunks are cut from whole files.

Real nodes, real clients and a real S3 store (SeaweedFS, the `lab` of channel_fixtures.py).
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path
from typing import Any

from channel_fixtures import BUCKET, Lab, channel_stats, one_line_error
from conftest import command, sha1_file, write_random_file

from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.store.layout import StorageLayout

SIZE = 25_000_000  # over 20,000,000: a manifest, two chunks


# -- 12: a corrupt manifest is named --------------------------------------------------


def test_corrupt_manifest_is_named_in_the_error(lab: Lab, cli: Any, tmp_path: Path) -> None:
    a, b = lab.node("a"), lab.node("b")
    src = write_random_file(tmp_path / "m.bin", SIZE, seed=12)
    uri = cli("store-file", str(src), "--upload-to-channel", "lab", env=lab.env(a)).stdout.strip()
    manifest = uri.split("?manifest=")[1]
    data = bytearray(lab.get(lab.object_key(manifest)))
    data[10] ^= 0xFF
    lab.put(lab.object_key(manifest), bytes(data))

    error = one_line_error(cli("load-file", uri, "--channel", "lab", env=lab.env(b)))
    assert f"s3://{BUCKET}/{lab.object_key(manifest)}" in error, error
    assert f"sha1 {manifest}" in error and "refused the manifest" in error, error
    assert not StorageLayout(b.storage_dir).object_path(sha1_file(src)).exists()


# -- 10: uploading again repairs a corrupt copy ----------------------------------------


def test_uploading_again_replaces_a_copy_with_other_bytes(
    lab: Lab,
    cli: Any,
    tmp_path: Path,
) -> None:
    a, b = lab.node("a"), lab.node("b")
    small = tmp_path / "small.txt"
    small.write_bytes(b"the right bytes " * 100)
    big = write_random_file(tmp_path / "big.bin", SIZE, seed=10)
    for path in (small, big):
        stored = cli("store-file", str(path), "--upload-to-channel", "lab", env=lab.env(a))
        assert stored.returncode == 0, stored
        key = lab.object_key(sha1_file(path))
        data = bytearray(lab.get(key))
        data[7] ^= 0xFF  # other bytes, the same size, no metadata: as another tool would put
        lab.put(key, bytes(data))
        assert len(lab.get(key)) == path.stat().st_size

        again = cli("store-file", str(path), "--upload-to-channel", "lab", env=lab.env(a))
        assert again.returncode == 0, again
        assert lab.get(key) == path.read_bytes()  # replaced
        loaded = cli("load-file", again.stdout.strip(), "--channel", "lab", env=lab.env(b))
        assert loaded.returncode == 0, loaded
        assert sha1_file(Path(loaded.stdout.strip())) == sha1_file(path)
        head = lab.client.head_object(Bucket=BUCKET, Key=key)
        assert head["Metadata"]["kachery-sha1"] == sha1_file(path)


# -- 11: a refused copy is not downloaded again ----------------------------------------


def test_a_refused_copy_is_not_downloaded_again(lab: Lab, cli: Any, tmp_path: Path) -> None:
    a, b, c = lab.node("a"), lab.node("b"), lab.node("c", request=False)
    small = tmp_path / "small.txt"
    small.write_bytes(b"the right bytes " * 100)
    uri = cli("store-file", str(small), "--upload-to-channel", "lab", env=lab.env(a)).stdout.strip()
    key = lab.object_key(sha1_file(small))
    data = bytearray(lab.get(key))
    data[7] ^= 0xFF
    lab.put(key, bytes(data))
    etag = lab.client.head_object(Bucket=BUCKET, Key=key)["ETag"]

    for node in (b, c):  # the first load downloads the copy and refuses it
        error = one_line_error(cli("load-file", uri, "--channel", "lab", env=lab.env(node)))
        assert "refused" in error and "corrupt" in error, error
    fetched = {node: channel_stats(node)["channelBytesDownloaded"] for node in (b, c)}

    # a node that may request waits (here 2 s) for a new copy, then says why it failed
    started = time.monotonic()
    result = cli("load-file", uri, "--channel", "lab", env=lab.env(b, KACHERY_CHANNEL_TIMEOUT="2"))
    error = one_line_error(result)
    assert 2 <= time.monotonic() - started < 15
    assert f"is corrupt (refused ETag {etag}); its provider must upload it again" in error, error
    # a node that may not request fails at once, with the same words
    error = one_line_error(cli("load-file", uri, "--channel", "lab", env=lab.env(c)))
    assert f"is corrupt (refused ETag {etag}); its provider must upload it again" in error, error
    assert {node: channel_stats(node)["channelBytesDownloaded"] for node in (b, c)} == fetched

    # the provider uploads again (a new ETag): the waiting node takes the new copy
    load = subprocess.Popen(
        [command("kachery-client"), "load-file", uri, "--channel", "lab"],
        env=lab.env(b, KACHERY_CHANNEL_TIMEOUT="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)
        assert load.poll() is None  # still waiting
        again = cli("store-file", str(small), "--upload-to-channel", "lab", env=lab.env(a))
        assert again.returncode == 0, again
        out, err = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    assert load.returncode == 0, err
    assert Path(out.decode().strip()).read_bytes() == small.read_bytes()


# -- 4: chunks of a file only another node holds ---------------------------------------


def _chunk_uri(path: Path, start: int, end: int) -> str:
    with open(path, "rb") as f:
        f.seek(start)
        chunk = hashlib.sha1(f.read(end - start)).hexdigest()
    return f"sha1://{chunk}?chunkOf={sha1_file(path)}~{start}~{end}"


def test_chunks_are_served_from_whole_files(lab: Lab, cli: Any, tmp_path: Path) -> None:
    a = lab.node("a", provide=True, poll_seconds=0.3)
    b, c = lab.node("b"), lab.node("c", request=False)
    src = write_random_file(tmp_path / "whole.bin", SIZE, seed=4)
    assert cli("store-file", str(src), env=lab.env(a)).returncode == 0  # on A only

    # B asks for the first chunk: A holds only the whole file, cuts the chunk and uploads it
    first = _chunk_uri(src, 0, CHUNK_SIZE)
    loaded = cli(
        "load-file", first, "--channel", "lab", env=lab.env(b, KACHERY_CHANNEL_TIMEOUT="60")
    )
    assert loaded.returncode == 0, loaded
    assert Path(loaded.stdout.strip()).read_bytes() == src.read_bytes()[:CHUNK_SIZE]

    # the whole file in the bucket: C (which never requests) cuts the last chunk from it
    assert cli("store-file", str(src), "--upload-to-channel", "lab", env=lab.env(a)).returncode == 0
    last = _chunk_uri(src, CHUNK_SIZE, SIZE)
    loaded = cli("load-file", last, "--channel", "lab", env=lab.env(c))
    assert loaded.returncode == 0, loaded
    assert Path(loaded.stdout.strip()).read_bytes() == src.read_bytes()[CHUNK_SIZE:]


def test_python_load_bytes_of_a_file_only_another_node_holds(
    lab: Lab,
    cli: Any,
    tmp_path: Path,
) -> None:
    import kachery_client as kc

    a = lab.node("a", provide=True, poll_seconds=0.3)
    b = lab.node("b")
    src = write_random_file(tmp_path / "w.bin", SIZE, seed=40)
    uri = cli("store-file", str(src), env=lab.env(a)).stdout.strip()
    client = kc.Client(daemon_port=b.port, storage_dir=str(b.storage_dir), channel="lab")
    try:
        data = client.load_bytes(uri, CHUNK_SIZE + 1000, CHUNK_SIZE + 1100)  # in the last chunk
    finally:
        client.close()
    assert data == src.read_bytes()[CHUNK_SIZE + 1000 : CHUNK_SIZE + 1100]
