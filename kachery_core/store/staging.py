"""Staging files: where an object's bytes are written before they are known to be whole.

A staging file is named after this host and process (`staging_name`), is private (0600)
and is removed unless committed, so a store that fails for any reason keeps nothing; a
process killed mid-store leaves only its staging file, which `sweep_dead_staging_files`
removes on the next store of this host. `ObjectWriter` writes an object piece by piece
(a network body) into one. `LocalStorage` (local.py) renames committed ones into place.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional

from kachery_core.content.hashing import HashResult, _ChunkHasher, writer_for
from kachery_core.content.manifest import MANIFEST_THRESHOLD, Manifest
from kachery_core.store.base import StoredObject

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from kachery_core.store.local import LocalStorage

PARALLEL_PIECE = 4 << 20
"""Pieces at least this big (a node's gathered upload pieces) are hashed (whole, chunks) on
helper threads while the caller's thread writes them: one piece costs the slowest of the
three, not their sum. gRPC's 1 MiB messages stay on the client's one worker thread, which
keeps its memory within bounds."""


class StagingFile:
    """A temporary file that is removed unless committed (or kept for debugging)."""

    def __init__(self, path: Path, keep: bool) -> None:
        self.path = path
        self.keep = keep
        self.committed = False
        # Readable too: large stores hash the staging file through a mapping as it fills.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.file = os.fdopen(fd, "wb", buffering=0)

    def finish(self, fsync: bool) -> None:
        if fsync:
            os.fsync(self.file.fileno())
        self.file.close()

    def __enter__(self) -> StagingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.file.closed:
            self.file.close()
        if not self.committed and not self.keep:
            unlink_quietly(self.path)


class ObjectWriter:
    """Write an object piece by piece, then `commit()` it (or `abort()`).

    >>> with storage.object_writer() as writer:          # doctest: +SKIP
    ...     for piece in body:
    ...         writer.write(piece)
    ...     stored = writer.commit(expected_sha1=None)
    """

    def __init__(self, storage: LocalStorage, manifest: bool = True) -> None:
        self._storage = storage
        self._staging = storage._staging_file()
        import hashlib

        self._whole = hashlib.sha1()
        self._chunks = _ChunkHasher() if manifest else None
        self._pool: Optional[ThreadPoolExecutor] = None
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        """Hash and write one piece; every byte of it is used before this returns."""
        view = memoryview(data).cast("B")
        hashers: List[Callable[[memoryview], None]] = [self._whole.update]
        if self._chunks is not None:
            hashers.append(self._chunks.update)
        if len(view) < PARALLEL_PIECE:
            for hasher in hashers:
                hasher(view)
            writer_for(self._staging.file)(view)
        else:  # hashlib and file writes release the GIL: the three run at once
            pool = self._pool or self._start_pool(len(hashers))
            pending = [pool.submit(hasher, view) for hasher in hashers]
            try:
                writer_for(self._staging.file)(view)
            finally:
                for future in pending:
                    future.result()  # the hashers are done with the piece before it is let go
        self.size += len(view)

    def _start_pool(self, workers: int) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor  # only writers of large pieces

        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="kachery-hash")
        return self._pool

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def commit(self, expected_sha1: Optional[str] = None) -> StoredObject:
        self._stop_pool()
        manifest = None
        if self.size > MANIFEST_THRESHOLD and self._chunks is not None:
            manifest = Manifest(self.size, self._whole.hexdigest(), self._chunks.finish())
        result = HashResult(self._whole.hexdigest(), self.size, manifest)
        with self._staging:
            return self._storage._commit(self._staging, result, expected_sha1)

    def abort(self) -> None:
        self._stop_pool()
        self._staging.__exit__(None, None, None)

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._staging.committed:
            self.abort()


def sweep_dead_staging_files(temp_dir: Path) -> None:
    """Remove staging files left by processes of this host that no longer exist."""
    prefix = f"{HOST}-"
    try:
        names = os.listdir(temp_dir)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".part")):
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and not _process_exists(int(pid_text)):
            unlink_quietly(temp_dir / name)


def staging_name() -> str:
    return f"{HOST}-{os.getpid()}-{os.urandom(6).hex()}.part"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unlink_quietly(path: Path) -> None:
    """Remove a file that may already be gone (staging files, leftovers of other processes)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


HOST = os.uname().nodename.replace("-", "_") or "host"  # gethostname(), without `socket`
