"""`kc.open` / `Client.open` on the embedded backend: a seekable file, read lazily by chunk
with every chunk hash-checked in place before any of its bytes is returned."""

from __future__ import annotations

import io
import os
import random
import stat
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from conftest import write_random_file

import kachery_client as kc
from kachery_client.lazy import pieces
from kachery_core.content.uri import parse_uri
from kachery_core.store.layout import StorageLayout

SIZE = 50_000_000  # three chunks: 20,000,000 + 20,000,000 + 10,000,000


@pytest.fixture
def big(kenv: Dict[str, str], tmp_path: Path):
    src = write_random_file(tmp_path / "big.bin", SIZE, seed=3)
    return src.read_bytes(), kc.store_file(src)


def test_open_gives_a_seekable_file_that_readers_accept(kenv, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(1000.0))
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
        z.writestr("inside.txt", "zipped")
    with tarfile.open(tmp_path / "t.tar", "w") as t:
        t.add(tmp_path / "a.npy", arcname="a.npy")
    with kc.open(kc.store_file(tmp_path / "a.npy")) as f:
        assert f.readable() and f.seekable() and not f.writable()
        assert np.array_equal(np.load(f), np.arange(1000.0))
        assert f.tell() == f.size == os.path.getsize(tmp_path / "a.npy")
        f.seek(-10, io.SEEK_END)
        assert f.read() == (tmp_path / "a.npy").read_bytes()[-10:]
        buffer = bytearray(6)
        f.seek(0)
        assert f.readinto(buffer) == 6 and bytes(buffer) == b"\x93NUMPY"
    assert f.closed
    with zipfile.ZipFile(kc.open(kc.store_file(tmp_path / "z.zip"))) as z:
        assert z.read("inside.txt") == b"zipped"
    with tarfile.open(fileobj=kc.open(kc.store_file(tmp_path / "t.tar"))) as t:
        member = t.extractfile("a.npy")
        assert member is not None and member.read() == (tmp_path / "a.npy").read_bytes()


def test_h5py_reads_a_dataset_through_open(kenv, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py", reason="h5py has no wheel for this Python")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["group/data"] = np.arange(100_000, dtype="i8")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tmp_path / "x.h5").rename(tree / "x.h5")
    uri = kc.store_dir(tree, "rec") + "/x.h5"
    with kc.open(uri) as raw, h5py.File(raw, "r") as f:
        assert f["group/data"][99_999] == 99_999


def test_a_large_file_reads_right_at_any_offset(big) -> None:
    data, uri = big
    rng = random.Random(1)
    with kc.open(uri) as f:
        assert f.size == SIZE
        for _ in range(50):
            start = rng.randrange(SIZE)
            f.seek(start)
            assert f.read(100_000) == data[start : start + 100_000]
        f.seek(19_999_990)
        assert f.read(30) == data[19_999_990:20_000_020]  # across a chunk boundary
        f.seek(0)
        assert f.read() == data


def test_a_damaged_chunk_in_storage_is_refused_and_its_bytes_never_returned(
    big, kenv, tmp_path: Path
) -> None:
    data, uri = big
    sha1 = parse_uri(uri).sha1
    path = StorageLayout(Path(kenv["KACHERY_STORAGE_DIR"])).object_path(sha1)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "r+b") as f:  # one byte of chunk 1 (bytes 20,000,000-40,000,000)
        f.seek(30_000_000)
        byte = f.read(1)
        f.seek(30_000_000)
        f.write(bytes([byte[0] ^ 1]))
    pieces._checked.clear()
    with kc.open(uri) as f:
        assert f.read(1000) == data[:1000]  # chunk 0 is intact and checked alone
        f.seek(20_000_000)
        buffer = bytearray(1000)
        with pytest.raises(kc.IntegrityError) as caught:
            f.readinto(buffer)
        assert bytes(buffer) == bytes(1000)  # nothing of the damaged chunk was given
        f.seek(45_000_000)
        assert f.read(10) == data[45_000_000:45_000_010]  # chunk 2 is still fine
    message = str(caught.value)
    assert uri in message and "chunk 1 (bytes 20000000-40000000" in message


def test_a_bare_uri_of_a_large_file_is_checked_whole(big, kenv) -> None:
    data, uri = big
    bare = uri.split("?")[0]  # no manifest: nothing to check a chunk against
    with kc.open(bare) as f:
        assert f.size == SIZE
        f.seek(SIZE - 7)
        assert f.read() == data[-7:]


def test_a_damaged_small_object_is_refused(kenv, tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_bytes(b"small and honest")
    uri = kc.store_file(tmp_path / "s.txt")
    path = StorageLayout(Path(kenv["KACHERY_STORAGE_DIR"])).object_path(parse_uri(uri).sha1)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(b"small and hostile")
    pieces._checked.clear()
    with pytest.raises(kc.IntegrityError, match="whole object"):  # checked before any read
        kc.open(uri)


def test_threads_reading_one_file_get_the_same_bytes(big) -> None:
    data, uri = big
    errors = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with kc.open(uri) as f:
                for _ in range(20):
                    start = rng.randrange(SIZE)
                    f.seek(start)
                    assert f.read(65536) == data[start : start + 65536]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_directory_or_a_missing_entry_is_named(kenv, tmp_path: Path) -> None:
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "f.txt").write_text("x")
    root = kc.store_dir(tmp_path / "tree", "t")
    with pytest.raises(kc.InvalidInputError, match="is a directory"):
        kc.open(root + "/sub")
    with pytest.raises(kc.NotFoundError, match="no entry 'nope'"):
        kc.open(root + "/nope")
    with kc.open(root + "/sub/f.txt") as f:
        assert f.read() == b"x"
