"""Downloads that survive interruption: a 1 GiB load cut at 900 MB restarts at 900 MB.

The bytes go to `<temp_dir>/<sha1>.download`, named by the object so that the next
attempt (in any process) finds them. Nothing there is trusted: before resuming, the
chunks already in the file are checked against the manifest, and only whole chunks whose
SHA-1 matches are kept. The object appears (atomically, by rename) only after the SHA-1 of
the whole file matches. Two processes loading the same object take turns (a file lock),
so they never write the same file at once.

One core serves both kinds of download: a sequential one (a remote node's byte stream)
keeps the verified *prefix* and appends,

    with ResumableDownload(storage, uri.sha1, manifest) as download:
        offset = download.verified_size()
        ... stream bytes [offset, size) with hash_stream(..., resume=download.whole)
        path = download.commit()

and a parallel one (a channel's ranged GETs) keeps every verified chunk wherever it is
(`verified_chunks`), writes the rest at their offsets, and sets `whole` before `commit()`.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Optional, Set, TypeVar

from kachery_core.content.manifest import Chunk, Manifest
from kachery_core.errors import IntegrityError
from kachery_core.store.local import LocalStorage, unlink_quietly

SUFFIX = ".download"
READ_BLOCK = 256 << 10
"""Bytes `hash_range` reads at a time, into one buffer per call. Small, so that no freed
block raises glibc's dynamic mmap threshold (it grows to the largest freed mapping), which
would keep the chunk threads' blocks of a channel download in per-thread arenas."""

T = TypeVar("T")
R = TypeVar("R")
Mapper = Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]
"""`map`, or a thread pool's `map`: how `verified_chunks` checks the candidate chunks."""


def download_path(storage: LocalStorage, sha1: str) -> Path:
    """Where a resumable download of object `sha1` keeps its bytes, whoever runs it."""
    return storage.temp_dir / f"{sha1}{SUFFIX}"


class ResumableDownload:
    """The locked `.download` file of one object, from what can be kept to the commit.

    `waiting`, if given, is called again and again while another transfer holds the lock:
    it pauses briefly and may raise to give up (when the node stops, say). Without it the
    wait is unbounded.
    """

    def __init__(
        self,
        storage: LocalStorage,
        sha1: str,
        manifest: Optional[Manifest],
        waiting: Optional[Callable[[], None]] = None,
    ) -> None:
        self.storage = storage
        self.sha1 = sha1
        self.manifest = manifest
        self.path = download_path(storage, sha1)
        self.whole: Any = hashlib.sha1()
        """SHA-1 of the whole file so far: fed by the caller, checked by `commit()`."""
        self.file: Optional[BinaryIO] = None
        self._waiting = waiting
        self._committed = False

    @property
    def fd(self) -> int:
        assert self.file is not None
        return self.file.fileno()

    def __enter__(self) -> ResumableDownload:
        self.storage.temp_dir.mkdir(parents=True, exist_ok=True)
        self.file = self._open_locked()
        return self

    def _open_locked(self) -> BinaryIO:
        """Open and lock the file at `path`, again if it was renamed or removed meanwhile.

        The transfer that held the lock may have committed (renamed the file into place as
        the object) or given up (removed it); a lock on that inode guards nothing.
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                self._lock(fd)
                same = _same_file(os.fstat(fd), self.path)
            except BaseException:
                os.close(fd)
                raise
            if same:
                return os.fdopen(fd, "r+b", buffering=0)
            os.close(fd)

    def _lock(self, fd: int) -> None:
        import fcntl

        if self._waiting is None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits while another process is on this object
            return
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                self._waiting()

    def done_elsewhere(self) -> Optional[Path]:
        """The object, if another process finished it while we waited for the lock."""
        return self.storage.find(self.sha1)

    def verified_size(self) -> int:
        """Keep the prefix made of whole, verified chunks (fed to `whole`); return its length."""
        size = os.fstat(self.fd).st_size
        kept = 0
        if self.manifest is not None:
            for chunk in self.manifest.chunks:
                if chunk.end > size:
                    break
                before = self.whole.copy()
                if not chunk_verifies(self.fd, chunk, self.whole):
                    self.whole = before
                    break
                kept = chunk.end
        assert self.file is not None
        if size > kept:
            # Only when there is something to cut: ext4 flushes a file truncated to
            # nothing to disk when it is closed (its guard for replace-by-truncate), a
            # wait of a fraction of a second per GiB for a fresh download.
            self.file.truncate(kept)
        self.file.seek(kept)
        return kept

    def verified_chunks(self, mapper: Mapper[Any, bool] = map) -> Set[int]:
        """Indices of the manifest's chunks already in the file whose SHA-1 matches.

        Anything beyond the object's size is cut off first. `mapper` may check chunks in
        parallel (a thread pool's `map`).
        """
        assert self.manifest is not None, "only a download with a manifest keeps chunks"
        present = os.fstat(self.fd).st_size
        if present > self.manifest.size:
            os.ftruncate(self.fd, self.manifest.size)
            present = self.manifest.size
        candidates = [
            (i, c)
            for i, c in enumerate(self.manifest.chunks)
            if c.end <= present and not _is_hole(self.fd, c)
        ]
        matches = mapper(lambda item: chunk_verifies(self.fd, item[1]), candidates)
        return {i for (i, _), ok in zip(candidates, matches) if ok}

    def commit(self) -> Path:
        """Check the whole file's SHA-1 and move it into place as the object."""
        assert self.file is not None
        actual = self.whole.hexdigest()
        if actual != self.sha1:
            self.file.truncate(0)  # nothing in it can be trusted
            raise IntegrityError(
                f"downloaded bytes hash to {actual}, expected {self.sha1}",
                "the source is corrupt or the transfer was damaged; nothing was stored",
            )
        self.file.flush()
        final = self.storage.adopt_verified(self.path, self.sha1)
        self._committed = True
        return final

    def __exit__(self, *exc: object) -> None:
        assert self.file is not None
        if not self._committed:
            resumable = self.manifest is not None and os.fstat(self.fd).st_size > 0
            if not resumable:
                unlink_quietly(self.path)  # still ours: we hold the lock on this inode
        self.file.close()  # releases the lock


def hash_range(fd: int, start: int, end: int, *digests: Any) -> None:
    """Feed bytes [start, end) of the file to each digest (reading with preadv into one
    buffer: no seeking, so threads may share the descriptor; no fresh block per read)."""
    buffer = memoryview(bytearray(min(READ_BLOCK, max(end - start, 1))))
    position = start
    while position < end:
        got = os.preadv(fd, [buffer[: min(len(buffer), end - position)]], position)
        if not got:
            break
        block = buffer[:got]
        for digest in digests:
            digest.update(block)
        position += got


def chunk_verifies(fd: int, chunk: Chunk, whole: Optional[Any] = None) -> bool:
    """Whether the file holds the chunk's bytes (its SHA-1 matches); also feeds `whole`."""
    digest = hashlib.sha1()
    size = _Counter()
    hash_range(fd, chunk.start, chunk.end, digest, size, *([whole] if whole is not None else []))
    return size.count == chunk.end - chunk.start and digest.hexdigest() == chunk.sha1


class _Counter:
    """A digest-like object that counts the bytes fed to it."""

    def __init__(self) -> None:
        self.count = 0

    def update(self, block: bytes) -> None:
        self.count += len(block)


def _same_file(st: os.stat_result, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _is_hole(fd: int, chunk: Chunk) -> bool:
    """True when the file has no data at all in the chunk's range (never written)."""
    seek_data = getattr(os, "SEEK_DATA", None)
    if seek_data is None:
        return False
    try:
        return os.lseek(fd, chunk.start, seek_data) >= chunk.end
    except OSError as exc:
        return exc.errno == errno.ENXIO  # no data after chunk.start
