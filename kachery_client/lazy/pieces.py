"""The pieces of an object that a lazy read needs: found, fetched, cached and hash-checked.

A file over 20,000,000 bytes with an authenticated manifest is read by chunk: each chunk is
an ordinary content-addressed object (named `sha1://CHUNK?chunkOf=FILE~START~END`), so it is
cached in the client's storage like any other object, and a later read or `load_file`
finds it there. A smaller file, or a large one whose manifest cannot be authenticated, is
one piece: the whole object.

Every piece is hash-checked before a byte of it is given out:

- a piece found on disk (in the backend's storage, read in place, or in the client's
  cache) is hashed once per process, where it lies (the check is remembered by path, inode,
  size and mtime, so a changed file is checked again);
- a piece fetched through the backend (`open_range`) is written through a staging file and
  appears in the cache only once its hash is right; otherwise `IntegrityError` names the
  URI and the chunk, and nothing is kept.

Threads of one process that need the same piece wait for one fetch (`_piece_lock`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, List, Optional, Set, Tuple

from kachery_core.content.hashing import fill
from kachery_core.content.uri import ContentUri
from kachery_core.errors import IntegrityError, NotFoundError
from kachery_core.store.local import LocalStorage

if TYPE_CHECKING:
    from kachery_core.backend.base import Backend
    from kachery_core.settings.config import Config

BLOCK = 1 << 20
"""Bytes hashed or copied at a time: memory stays flat whatever the piece size."""


@dataclass(frozen=True)
class Piece:
    """Bytes [start, end) of `uri`'s object, whose own SHA-1 is `sha1`.

    `end` is None only for a whole object whose size is not known yet.
    """

    index: int
    start: int
    end: Optional[int]
    sha1: str

    def describe(self, uri: ContentUri) -> str:
        if self.sha1 == uri.sha1:
            return "(the whole object)"
        return f"chunk {self.index} (bytes {self.start}-{self.end}, sha1://{self.sha1})"


@dataclass(frozen=True)
class Located:
    """Where a checked piece lies: `length` bytes at `offset` of the file at `path`."""

    path: str
    offset: int
    length: int


Storages = Tuple[Optional[LocalStorage], Optional[LocalStorage]]
"""(storage read in place, writable cache for fetched pieces): either may be None."""


def lazy_storages(backend: Backend, config: Optional[Config] = None) -> Storages:
    """The backend's answer (`backend.lazy_storages()`), or for a backend without one,
    no storage in place and the per-user cache for fetched pieces."""
    hook: Optional[Callable[[], Storages]] = getattr(backend, "lazy_storages", None)
    if hook is not None:
        return hook()
    from kachery_core.settings.paths import user_cache_dir

    temp = None if config is None else config.temp_dir
    return None, LocalStorage(user_cache_dir() / "storage", temp)


# -- checks, remembered for the process -------------------------------------------------

_checked: Set[Tuple[Any, ...]] = set()
_checked_guard = threading.Lock()
_MAX_REMEMBERED = 100_000


def _check_key(sha1: str, path: str, offset: int, length: int) -> Tuple[Any, ...]:
    st = os.stat(path)
    return (sha1, path, offset, length, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _remember(key: Tuple[Any, ...]) -> None:
    with _checked_guard:
        if len(_checked) >= _MAX_REMEMBERED:
            _checked.clear()
        _checked.add(key)


def hash_region(path: str, offset: int, length: int) -> str:
    """The SHA-1 of `length` bytes at `offset` of a file, read a block at a time."""
    digest = hashlib.sha1()
    buffer = bytearray(min(BLOCK, max(length, 1)))
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        left = length
        while left > 0:
            n = f.readinto(view[: min(left, len(view))])
            if not n:
                break
            digest.update(view[:n])
            left -= n
    return digest.hexdigest()


# -- one lock per piece in flight --------------------------------------------------------


class _PieceLock:
    def __init__(self) -> None:
        self.lock = threading.Lock()


_locks: weakref.WeakValueDictionary[str, _PieceLock] = weakref.WeakValueDictionary()
_locks_guard = threading.Lock()


def _piece_lock(sha1: str) -> _PieceLock:
    with _locks_guard:
        found = _locks.get(sha1)
        if found is None:
            found = _PieceLock()
            _locks[sha1] = found
        return found


# -- finding and fetching -----------------------------------------------------------------


class PieceSource:
    """Finds, fetches and checks the pieces of one object through one backend."""

    def __init__(
        self,
        backend: Backend,
        uri: ContentUri,
        storages: Storages,
        whole_size: Optional[int] = None,
        shown: Optional[str] = None,
    ) -> None:
        self.transport = backend
        self.uri = uri
        self.in_place, self.cache = storages
        self.whole_size = whole_size
        self.shown = shown or str(uri)
        self.fetched_bytes = 0
        """Bytes this source had the backend send (for tests and benchmarks)."""

    def _storages(self) -> List[LocalStorage]:
        found = [s for s in (self.in_place, self.cache) if s is not None]
        if len(found) == 2 and found[0].root == found[1].root:
            del found[1]
        return found

    def locate(self, piece: Piece) -> Located:
        """The checked piece on disk: found (and checked once), or fetched into the cache."""
        holder = _piece_lock(piece.sha1)
        with holder.lock:
            found = self._find(piece)
            if found is not None:
                return found
            return self._fetch(piece)

    def _find(self, piece: Piece) -> Optional[Located]:
        for storage in self._storages():
            if piece.sha1 != self.uri.sha1 and piece.end is not None:
                whole = storage.find(self.uri.sha1)
                if whole is not None and self._whole_fits(whole):
                    return self._checked(piece, str(whole), piece.start, piece.end - piece.start)
            path = storage.find(piece.sha1)
            if path is not None:
                return self._checked(piece, str(path), 0, os.stat(path).st_size)
        return None

    def _whole_fits(self, path: Path) -> bool:
        return self.whole_size is None or os.stat(path).st_size == self.whole_size

    def _checked(self, piece: Piece, path: str, offset: int, length: int) -> Located:
        """The piece at `path`, once its bytes there hash to its SHA-1 (checked once)."""
        if piece.end is not None and length != piece.end - piece.start:
            raise self._damaged(piece, f"{length} bytes where {piece.end - piece.start} belong")
        key = _check_key(piece.sha1, path, offset, length)
        if key not in _checked:
            received = hash_region(path, offset, length)
            if received != piece.sha1:
                raise self._damaged(piece, f"its bytes in {path} hash to {received}")
            _remember(key)
        return Located(path, offset, length)

    def _damaged(self, piece: Piece, why: str) -> IntegrityError:
        return IntegrityError(
            f"{self.shown} {piece.describe(self.uri)}: {why}",
            "the copy is damaged, or was altered on the way; none of its bytes were returned",
        )

    def _fetch(self, piece: Piece) -> Located:
        if self.cache is None:
            # A backend reading a node's storage in place: have the node make the object
            # present (from its channel if need be), then read it there.
            self.transport.load_file(self.uri)
            found = self._find(piece)
            if found is None:
                raise NotFoundError(f"{self.shown} {piece.describe(self.uri)} is not on disk")
            return found
        stream = self.transport.open_range(self.uri, piece.start, piece.end)
        try:
            self._store(piece, stream)
        finally:
            stream.close()
        path = self.cache.find(piece.sha1)
        assert path is not None, "a committed piece is in the cache"
        length = os.stat(path).st_size
        _remember(_check_key(piece.sha1, str(path), 0, length))  # hashed as it was stored
        return Located(str(path), 0, length)

    def _store(self, piece: Piece, stream: BinaryIO) -> None:
        """Copy the backend's bytes into the cache; they appear only if their hash is right."""
        assert self.cache is not None
        limit = None if piece.end is None else piece.end - piece.start
        writer = self.cache.object_writer(manifest=False)  # one hash pass: pieces need no manifest
        try:
            self._copy(piece, stream, writer.write, limit)
            if limit is not None and writer.size != limit:
                raise self._damaged(piece, f"the backend sent {writer.size} of {limit} bytes")
            try:
                writer.commit(expected_sha1=piece.sha1)
            except IntegrityError as exc:
                raise self._damaged(
                    piece, f"from {_source(self.transport)}: {exc.message}"
                ) from None
        finally:
            writer.abort()

    def _copy(
        self, piece: Piece, stream: BinaryIO, write: Callable[[Any], None], limit: Optional[int]
    ) -> None:
        """Receive on this thread while the last block is hashed and written on another:
        two buffers, at most one block waiting, so memory stays at two blocks."""
        readinto = getattr(stream, "readinto", None)
        buffers = [memoryview(bytearray(BLOCK)), memoryview(bytearray(BLOCK))]
        pending: Optional[Future[None]] = None
        received = 0
        with ThreadPoolExecutor(1, thread_name_prefix="kachery-piece-write") as pool:
            try:
                for turn in itertools.count():
                    view = buffers[turn % 2]  # the other one may still be being written
                    if readinto is not None:
                        n = fill(readinto, view)
                    else:
                        data = stream.read(BLOCK)
                        n = len(data)
                        view[:n] = data
                    if not n:
                        break
                    received += n
                    self.fetched_bytes += n
                    if limit is not None and received > limit:
                        raise self._damaged(piece, f"the backend sent more than {limit} bytes")
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(write, view[:n])
            finally:
                if pending is not None:
                    pending.result()


def _source(backend: Backend) -> str:
    from kachery_client.verified_read import describe_source

    return describe_source(backend)
