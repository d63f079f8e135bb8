"""`kc.open(uri)`: a seekable, read-only binary file over a stored object, read lazily.

    >>> with kc.open("sha1dir://<hash>.rec/ephys/session.nwb") as f:     # doctest: +SKIP
    ...     h5py.File(f, "r")["acquisition"]

Only the pieces a read touches are fetched (see `pieces.py`: 20,000,000-byte chunks of a
file with an authenticated manifest, else the whole object), each hash-checked before any
of its bytes is returned. Reads that follow each other prefetch the next chunks on a
shared pool of threads, at most `PREFETCH` of them per open file, so a sequential read
overlaps fetching and hashing with the caller's work. Memory stays flat: bytes go from
the checked piece on disk straight into the caller's buffer.
"""

from __future__ import annotations

import bisect
import io
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, Dict, List, Optional, Tuple, Union

from kachery_core.content.manifest import MANIFEST_THRESHOLD, Manifest
from kachery_core.content.uri import ContentUri, DirUri
from kachery_core.errors import InvalidInputError, NotFoundError

from .pieces import Located, Piece, PieceSource, Storages, lazy_storages

if TYPE_CHECKING:
    from kachery_core.backend.base import Backend
    from kachery_core.settings.config import Config

PREFETCH = 2
"""Chunks a sequential reader may have in flight ahead of it, per open file."""

SEQUENTIAL_RUN = 3
"""Reads in a row, each where the last ended, after which a reader counts as sequential."""

BUFFER_SIZE = 256 << 10
"""The `io.BufferedReader` buffer around a lazy file: small reads stay cheap."""

_pool: Optional[ThreadPoolExecutor] = None
_pool_guard = threading.Lock()


def _prefetch_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(4, thread_name_prefix="kachery-prefetch")
        return _pool


class LazyFile(io.RawIOBase):
    """The raw file under `kc.open`: reads pieces on demand, each checked first."""

    def __init__(
        self,
        source: PieceSource,
        pieces: List[Piece],
        size: int,
        located: Optional[Dict[int, Located]] = None,
    ) -> None:
        super().__init__()
        self._source = source
        self._pieces = pieces
        self._starts = [p.start for p in pieces]
        self.size = size
        self.uri = source.uri
        self.name = source.shown
        self._position = 0
        self._last_end = -1
        self._streak = 0
        self._located: Dict[int, Located] = dict(located or {})
        self._ahead: Dict[int, Future[Located]] = {}
        self._handles: Dict[str, BinaryIO] = {}
        self._guard = threading.Lock()

    # -- io.RawIOBase -------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence!r}: use 0, 1 or 2")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        view = memoryview(buffer).cast("B")
        done = 0
        # A read stops at the end of a piece once it has bytes: a buffered reader's
        # read-ahead never pulls in a chunk the caller did not ask for (it asks again).
        while done < len(view) and self._position < self.size and not (done and self._at_edge()):
            index = bisect.bisect_right(self._starts, self._position) - 1
            piece = self._pieces[index]
            where = self._locate(index)
            end = self.size if piece.end is None else piece.end
            n = min(len(view) - done, end - self._position)
            handle = self._handle(where.path)
            handle.seek(where.offset + self._position - piece.start)
            got = handle.readinto(view[done : done + n]) or 0  # type: ignore[attr-defined]
            if got != n:
                raise NotFoundError(f"{self.name}: {where.path} ended early")
            done += n
            self._position += n
        if done:
            self._after_read(self._position - done)
        return done

    def _at_edge(self) -> bool:
        i = bisect.bisect_left(self._starts, self._position)
        return i < len(self._starts) and self._starts[i] == self._position

    def close(self) -> None:
        if not self.closed:
            for future in self._ahead.values():
                future.cancel()
            self._ahead.clear()
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()
        super().close()

    # -- pieces ---------------------------------------------------------------------------

    def _locate(self, index: int) -> Located:
        with self._guard:
            found = self._located.get(index)
            future = self._ahead.pop(index, None)
        if found is not None:
            return found
        located = future.result() if future is not None else None
        if located is None:
            located = self._source.locate(self._pieces[index])
        with self._guard:
            self._located[index] = located
        return located

    def _after_read(self, start: int) -> None:
        """A run of reads each starting where the last ended prefetches the next chunks.

        A run, not one read: a random reader's read that happens to continue its buffered
        one must not fetch 40,000,000 bytes it will not use.
        """
        self._streak = self._streak + 1 if start == self._last_end else 0
        self._last_end = self._position
        if self._streak < SEQUENTIAL_RUN or len(self._pieces) < 2:
            return
        index = bisect.bisect_right(self._starts, max(self._position - 1, 0))
        with self._guard:
            for ahead in range(index, min(index + PREFETCH, len(self._pieces))):
                if ahead in self._located or ahead in self._ahead:
                    continue
                if len([f for f in self._ahead.values() if not f.done()]) >= PREFETCH:
                    break
                self._ahead[ahead] = _prefetch_pool().submit(
                    self._source.locate, self._pieces[ahead]
                )

    def _handle(self, path: str) -> BinaryIO:
        handle = self._handles.get(path)
        if handle is None:
            if len(self._handles) >= 4:
                oldest = next(iter(self._handles))
                self._handles.pop(oldest).close()
            handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
            self._handles[path] = handle
        return handle

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")


class KacheryFile(io.BufferedReader):
    """What `kc.open` returns: a buffered, seekable, read-only binary file.

    `.uri` is the object's `sha1://` URI and `.size` its size in bytes.
    """

    raw: LazyFile

    @property
    def uri(self) -> ContentUri:
        return self.raw.uri

    @property
    def size(self) -> int:
        return self.raw.size

    def writable(self) -> bool:
        return False


def open_uri(
    backend: Backend,
    uri: Union[ContentUri, DirUri],
    config: Optional[Config] = None,
    storages: Optional[Storages] = None,
) -> KacheryFile:
    """Open `uri` (a `sha1://` URI, or a file in a `sha1dir://` tree) for lazy reading."""
    raw = open_raw(backend, uri, config, storages)
    return KacheryFile(raw, BUFFER_SIZE)


def open_raw(
    backend: Backend,
    uri: Union[ContentUri, DirUri],
    config: Optional[Config] = None,
    storages: Optional[Storages] = None,
) -> LazyFile:
    shown = str(uri)
    size: Optional[int] = None
    if isinstance(uri, DirUri):
        uri, size = file_entry(backend, uri)
    if storages is None:
        storages = lazy_storages(backend, config)
    manifest = _manifest(backend, uri, storages, shown)
    if manifest is not None:
        if size is not None and manifest.size != size:
            from kachery_core.errors import IntegrityError

            raise IntegrityError(
                f"{shown}: the directory entry says {size} bytes, its manifest {manifest.size}",
                "the directory object misstates its files; nothing was read",
            )
        source = PieceSource(backend, uri, storages, manifest.size, shown)
        pieces = [Piece(i, c.start, c.end, c.sha1) for i, c in enumerate(manifest.chunks)]
        return LazyFile(source, pieces, manifest.size)
    source = PieceSource(backend, uri, storages, size, shown)
    if size is not None and size <= MANIFEST_THRESHOLD:
        return LazyFile(source, [Piece(0, 0, size, uri.sha1)], size)
    # No authenticated manifest: the only way to check the bytes is to read them all.
    whole = source.locate(Piece(0, 0, size, uri.sha1))
    return LazyFile(source, [Piece(0, 0, whole.length, uri.sha1)], whole.length, {0: whole})


def file_entry(backend: Backend, uri: DirUri) -> Tuple[ContentUri, int]:
    """The `sha1://` URI (with its manifest, if any) and size of a file in a tree."""
    from kachery_client.directories.operations import lookup
    from kachery_core.content.directory import FileEntry

    if not uri.path:
        raise _a_directory(uri)
    entry = lookup(backend, uri)
    if not isinstance(entry, FileEntry):
        raise _a_directory(uri)
    return entry.uri(uri.path[-1]), entry.size


def _a_directory(uri: DirUri) -> InvalidInputError:
    return InvalidInputError(
        f"{uri} is a directory, not a file",
        "open a file inside it: sha1dir://<hash>.<label>/<path>",
    )


def _manifest(
    backend: Backend, uri: ContentUri, storages: Storages, shown: str
) -> Optional[Manifest]:
    """The URI's manifest, fetched (and cached) as a checked object; None without one."""
    if uri.manifest_sha1 is None:
        return None
    from kachery_core.store.assembly import check_manifest

    source = PieceSource(backend, ContentUri(uri.manifest_sha1), storages, None, shown)
    try:
        where = source.locate(Piece(0, 0, None, uri.manifest_sha1))
    except NotFoundError:
        return None  # the backend has the object but not its manifest: read it whole
    with open(where.path, "rb") as f:
        f.seek(where.offset)
        data = f.read(where.length)
    manifest = Manifest.from_bytes(data)
    check_manifest(manifest, uri)
    return manifest
