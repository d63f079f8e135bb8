"""`ObjectWriter`: pieces of 1 MiB and more are hashed on helper threads beside the write.

The object must come out the same whatever the piece sizes (small pieces take the inline
path, large ones the threaded one, and both meet inside one chunk), and a write that fails
must leave nothing behind: no staging file and no helper thread still running.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import List

import pytest

from kachery_core.content.manifest import CHUNK_SIZE, Chunk, Manifest
from kachery_core.store.local import LocalStorage
from kachery_core.store.staging import PARALLEL_PIECE


def _pieces(data: bytes, sizes: List[int]) -> List[bytes]:
    out, at = [], 0
    for size in sizes:
        out.append(data[at : at + size])
        at += size
    out.append(data[at:])
    return [p for p in out if p]


def _hash_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kachery-hash")]


@pytest.mark.parametrize(
    "sizes",
    [
        [1, 7, 4096],  # small pieces only, then one large rest
        [PARALLEL_PIECE - 1, PARALLEL_PIECE, PARALLEL_PIECE + 1],
        [CHUNK_SIZE - 3, 6, 3 * PARALLEL_PIECE],  # a large piece across a chunk boundary
        [5 << 20] * 8,
    ],
)
def test_any_piece_sizes_give_the_same_object_and_manifest(
    tmp_path: Path, sizes: List[int]
) -> None:
    data = os.urandom(45_000_003)
    storage = LocalStorage(tmp_path / "store")
    with storage.object_writer() as writer:
        for piece in _pieces(data, sizes):
            writer.write(piece)
        stored = writer.commit()
    sha1 = hashlib.sha1(data).hexdigest()
    assert stored.sha1 == sha1 and stored.size == len(data)
    assert storage.layout.object_path(sha1).read_bytes() == data
    chunks = tuple(
        Chunk(s, min(s + CHUNK_SIZE, len(data)), hashlib.sha1(data[s : s + CHUNK_SIZE]).hexdigest())
        for s in range(0, len(data), CHUNK_SIZE)
    )
    assert stored.manifest_sha1 is not None
    assert storage.load_manifest(stored.manifest_sha1) == Manifest(len(data), sha1, chunks)
    assert list(storage.temp_dir.iterdir()) == []
    assert _hash_threads() == []


def test_a_writer_without_manifest_hashes_large_pieces_too(tmp_path: Path) -> None:
    data = os.urandom(3 * PARALLEL_PIECE + 5)
    storage = LocalStorage(tmp_path / "store")
    with storage.object_writer(manifest=False) as writer:
        writer.write(memoryview(data)[: 2 * PARALLEL_PIECE])
        writer.write(bytearray(data[2 * PARALLEL_PIECE :]))
        stored = writer.commit(expected_sha1=hashlib.sha1(data).hexdigest())
    assert storage.layout.object_path(stored.sha1).read_bytes() == data
    assert stored.manifest_sha1 is None


def test_a_failed_large_write_leaves_no_staging_file_and_no_thread(tmp_path: Path) -> None:
    """A real write error (the file-size limit, EFBIG) in the middle of a large piece."""
    script = textwrap.dedent(
        f"""
        import errno, os, resource, sys, threading
        from pathlib import Path
        from kachery_core.store.local import LocalStorage

        storage = LocalStorage(Path({str(tmp_path / "store")!r}))
        storage.temp_dir.mkdir(parents=True, exist_ok=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, resource.RLIM_INFINITY))
        writer = storage.object_writer()
        writer.write(os.urandom(2 << 20))
        try:
            writer.write(os.urandom(2 << 20))
        except OSError as exc:
            assert exc.errno == errno.EFBIG, exc
        else:
            sys.exit("the write past the limit did not fail")
        writer.abort()
        left = [t.name for t in threading.enumerate() if t.name.startswith("kachery-hash")]
        print(sorted(os.listdir(storage.temp_dir)), left)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []"
    assert not (tmp_path / "store" / "sha1").exists()
