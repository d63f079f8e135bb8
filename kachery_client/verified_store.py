"""Storing through a backend without taking its word for the hash.

A node answers a store with the SHA-1 it computed; something between the client and the
node (or a dishonest node) could answer with another object's. The client hashes the same
bytes itself (a file on a thread beside the request, a stream as it is sent) and raises
`IntegrityError` naming the node and both hashes when the answer differs. Backends that
hash in this very process (`stores_in_process = True`, the embedded `local` backend) are
taken at their word: the hash is computed by the code that writes the bytes.

    >>> stored = store_file_checked(backend, "results.txt")   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, List, Optional, Sequence

from kachery_core.content.hashing import Progress, sha1_of_file
from kachery_core.errors import IntegrityError
from kachery_core.store.base import StoredObject

if TYPE_CHECKING:
    from kachery_core.backend.base import Backend
    from kachery_core.backend.batch import BatchProgress


def store_file_checked(
    backend: Backend, path: str, progress: Optional[Progress] = None
) -> StoredObject:
    """`backend.store_file(path)`, its answer checked against the file's own SHA-1."""
    return _with_file_hash(backend, path, lambda: backend.store_file(path, progress), "store")


def link_file_checked(
    backend: Backend, path: str, progress: Optional[Progress] = None
) -> StoredObject:
    """`backend.link_file(path)`, its answer checked against the file's own SHA-1."""
    return _with_file_hash(backend, path, lambda: backend.link_file(path, progress), "link")


def store_files_checked(
    backend: Backend, paths: Sequence[str], progress: Optional[BatchProgress] = None
) -> List[StoredObject]:
    """`backend.store_files(paths)` (small files), each answer checked against its file's
    own SHA-1, hashed here after the backend sent it (a few KiB: cheaper than a thread)."""
    stored = backend.store_files(paths, progress)
    if not _in_process(backend):
        for path, obj in zip(paths, stored):
            check_answer(backend, obj, sha1_of_file(path), "store")
    return stored


def store_stream_checked(
    backend: Backend, stream: BinaryIO, progress: Optional[Progress] = None
) -> StoredObject:
    """`backend.store_stream(stream)`, hashing the bytes as the backend reads them."""
    if _in_process(backend):
        return backend.store_stream(stream, progress)
    hashing = HashingReader(stream)
    stored = backend.store_stream(hashing, progress)  # type: ignore[arg-type]
    check_answer(backend, stored, hashing.hexdigest(), "store")
    return stored


def check_answer(backend: Backend, stored: StoredObject, local: str, what: str) -> None:
    """`IntegrityError` unless the backend's answer names the bytes hashed here."""
    if stored.sha1 != local:
        from kachery_client.verified_read import describe_source

        raise IntegrityError(
            f"{describe_source(backend)} answered the {what} with sha1 {stored.sha1}, "
            f"but the bytes sent hash to {local}",
            "the node or something between is not honest; no URI was given",
        )


def _in_process(backend: Backend) -> bool:
    return bool(backend.stores_in_process)


def _with_file_hash(
    backend: Backend, path: str, store: Callable[[], StoredObject], what: str
) -> StoredObject:
    """Run `store()` while a thread hashes the file; compare the two when both are done."""
    if _in_process(backend):
        return store()
    hashed: List[Any] = []

    def hash_file() -> None:
        try:
            hashed.append(sha1_of_file(path))
        except OSError as exc:
            hashed.append(exc)

    worker = threading.Thread(target=hash_file, name="kachery-store-hash", daemon=True)
    worker.start()
    try:
        stored = store()
    finally:
        worker.join()
    local = hashed[0]
    if isinstance(local, OSError):
        raise local  # the file went away or became unreadable after the backend read it
    check_answer(backend, stored, local, what)
    return stored


class HashingReader:
    """A binary stream that hashes what is read from it; a seek back to where it started
    (a retried request) starts the hash again."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha1()
        try:
            self._start: Optional[int] = stream.tell() if stream.seekable() else None
        except (AttributeError, OSError, ValueError):
            self._start = None

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            n = readinto(view) or 0
        else:
            data = self._stream.read(len(view))
            n = len(data)
            view[:n] = data
        self._hash.update(view[:n])
        return n

    def seekable(self) -> bool:
        return self._start is not None

    def tell(self) -> int:
        return self._stream.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset != self._start:
            raise OSError("a stream being stored can only go back to where it started")
        self._hash = hashlib.sha1()
        return self._stream.seek(offset)

    def close(self) -> None:
        self._stream.close()
