"""kachery_core.store.resumable: what a resumed download keeps, and taking turns on one object."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import List

from kachery_core.content.manifest import Chunk, Manifest
from kachery_core.store.local import LocalStorage
from kachery_core.store.resumable import (
    READ_BLOCK,
    ResumableDownload,
    download_path,
    hash_range,
)

CHUNK = 1000


def _manifest(data: bytes) -> Manifest:
    chunks = tuple(
        Chunk(i, min(i + CHUNK, len(data)), hashlib.sha1(data[i : i + CHUNK]).hexdigest())
        for i in range(0, len(data), CHUNK)
    )
    return Manifest(len(data), hashlib.sha1(data).hexdigest(), chunks)


DATA = bytes(range(256)) * 20  # 5120 bytes: six chunks, the last short


def test_a_sequential_resume_keeps_the_verified_prefix(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "s")
    manifest = _manifest(DATA)
    storage.temp_dir.mkdir(parents=True)
    damaged = bytearray(DATA[:3500])
    damaged[2500] ^= 1  # chunk 2 is damaged, chunk 3 is cut short
    download_path(storage, manifest.sha1).write_bytes(bytes(damaged))
    with ResumableDownload(storage, manifest.sha1, manifest) as download:
        assert download.verified_size() == 2000
        assert download.file is not None
        download.file.write(DATA[2000:])
        download.whole.update(DATA[2000:])
        path = download.commit()
    assert path.read_bytes() == DATA
    assert not download_path(storage, manifest.sha1).exists()


def test_a_parallel_resume_keeps_every_verified_chunk(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "s")
    manifest = _manifest(DATA)
    storage.temp_dir.mkdir(parents=True)
    partial = bytearray(DATA)
    partial[1500] ^= 1  # chunk 1 damaged
    partial[3000:4000] = bytes(1000)  # chunk 3 never written (zeros)
    download_path(storage, manifest.sha1).write_bytes(bytes(partial[:5000]))  # chunk 5 missing
    with ResumableDownload(storage, manifest.sha1, manifest) as download:
        assert download.verified_chunks() == {0, 2, 4}
    assert download_path(storage, manifest.sha1).exists()  # kept for the next try


def test_a_waiting_download_finds_the_object_done(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "s")
    manifest = _manifest(DATA)
    found: List[object] = []
    first = ResumableDownload(storage, manifest.sha1, manifest).__enter__()

    def second() -> None:
        with ResumableDownload(storage, manifest.sha1, manifest) as download:
            found.append(download.done_elsewhere())

    waiter = threading.Thread(target=second)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # it waits for the lock
    assert first.verified_size() == 0
    assert first.file is not None
    first.file.write(DATA)
    first.whole.update(DATA)
    final = first.commit()  # renames the locked file away: the waiter must not keep it
    first.__exit__(None, None, None)
    waiter.join(10)
    assert found == [final]
    assert not download_path(storage, manifest.sha1).exists()  # its empty file is gone
    assert final.read_bytes() == DATA


def test_hash_range_reads_ranges_across_its_buffer_edges(tmp_path: Path) -> None:
    """hash_range reads into one reused buffer: every range, whatever its start and length
    against READ_BLOCK, hashes exactly its own bytes (and a range past the end stops there)."""
    data = os.urandom(2 * READ_BLOCK + 777)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, end in [
            (0, len(data)),
            (1, READ_BLOCK),
            (READ_BLOCK - 1, READ_BLOCK + 1),
            (5, 2 * READ_BLOCK + 5),
            (10, 10),
            (len(data) - 3, len(data) + 100),
        ]:
            digest = hashlib.sha1()
            hash_range(fd, start, end, digest)
            assert digest.hexdigest() == hashlib.sha1(data[start:end]).hexdigest(), (start, end)
    finally:
        os.close(fd)
