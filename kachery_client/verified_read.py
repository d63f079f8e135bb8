"""Reading an object so that no byte is trusted before it is known to be the object's.

A backend's `open_range` gives whatever bytes its node, disk or plugin sends; the name of
an object is its SHA-1, so the client can check them itself, whatever the backend. This
is the one place that does, for every read of the Python API and the CLI:

- a whole object streams through `VerifiedRead`, which hashes every byte and raises
  `IntegrityError` at the end of the stream when the hash is not the URI's;
- a byte range is cut from pieces that are checked first: the manifest's chunks that cover
  it (the manifest fetched through the same backend and checked against its own hash and
  the URI), or the whole object when the URI has no manifest.

    >>> with open_verified(backend, uri) as stream:      # doctest: +SKIP
    ...     data = stream.read()                           # IntegrityError at the end if bad

Only the standard library is imported here, so the CLI keeps starting fast.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, List, Optional, cast

from kachery_core.content.hashing import fill, hash_stream
from kachery_core.content.manifest import Manifest
from kachery_core.content.uri import ContentUri
from kachery_core.errors import IntegrityError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from kachery_core.backend.base import Backend
    from kachery_core.content.hashing import WriteAll

SMALL_OBJECT = 4 << 20
"""Objects up to this size are read whole and checked before `copy_to` writes a byte."""

READ_BLOCK = 1 << 20


def open_verified(
    backend: Backend, uri: ContentUri, start: int = 0, end: Optional[int] = None
) -> VerifiedRead:
    """A stream of bytes [start, end) of `uri` that only ever yields checked bytes.

    A whole read hashes as it streams and raises `IntegrityError` at its end on a mismatch;
    a range read checks the pieces that cover the range before yielding any of it.
    """
    if start == 0 and end is None:
        return VerifiedRead(backend.open_range(uri), uri, backend)
    pieces = _PiecesStream(_range_pieces(backend, uri, start, end))
    return VerifiedRead(cast(BinaryIO, pieces), uri, backend, whole=False)


def describe_source(backend: Backend) -> str:
    """`the NAME backend (ADDRESS)`: where bytes came from, for an error that names it."""
    try:
        info = backend.node_info()
        where = info.address or info.storage_dir
    except Exception:  # noqa: BLE001 - only naming the source of an error
        where = None
    return f"the {backend.name} backend ({where})" if where else f"the {backend.name} backend"


def mismatch(uri: ContentUri, backend: Backend, received: str, what: str = "") -> IntegrityError:
    """The error for bytes of `uri` (or of `what` in it) that hash to `received`."""
    part = f" {what}" if what else ""
    return IntegrityError(
        f"{uri}{part} from {describe_source(backend)}: the bytes received hash to {received}",
        "its copy is damaged, or they were altered on the way; nothing was kept",
    )


class VerifiedRead(io.RawIOBase):
    """A readable stream that hashes a whole object as it passes (`whole=True`), or that
    passes on range bytes already checked piece by piece (`whole=False`)."""

    def __init__(
        self, stream: BinaryIO, uri: ContentUri, backend: Backend, whole: bool = True
    ) -> None:
        super().__init__()
        self._stream = stream
        self._uri = uri
        self._transport = backend
        self._hash: Optional[Any] = hashlib.sha1() if whole else None
        self._read_into = _read_into(stream)
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._ended:
            return 0
        n = self._read_into(memoryview(buffer).cast("B"))
        if n:
            if self._hash is not None:
                self._hash.update(memoryview(buffer).cast("B")[:n])
            return n
        self._end()
        return 0

    def _end(self) -> None:
        self._ended = True
        if self._hash is not None:
            self._check(self._hash.hexdigest())

    def _check(self, received: str) -> None:
        if received != self._uri.sha1:
            raise mismatch(self._uri, self._transport, received)

    def copy_to(self, write: WriteAll) -> None:
        """Write every byte with `write`, as fast as one SHA-1 pass beside the copy allows.

        An object of up to SMALL_OBJECT bytes is read whole and checked before anything is
        written, so a pipe sees nothing of a damaged one; a larger one is written as it
        streams (hashing on another thread) and `IntegrityError` comes at its end.
        """
        first = bytearray(SMALL_OBJECT + 1)
        filled = fill(self.readinto, memoryview(first))
        if filled <= SMALL_OBJECT:  # the stream has ended, and been checked
            if filled:
                write(memoryview(first)[:filled])
            return
        write(memoryview(first)[:filled])
        del first
        if self._hash is None:  # range bytes: already checked, piece by piece
            while True:
                block = self._stream.read(READ_BLOCK)
                if not block:
                    return
                write(memoryview(block))
        result = hash_stream(self._read_into, write, manifest=False, resume=self._hash)
        self._ended = True
        self._check(result.sha1)

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


def _read_into(stream: BinaryIO) -> Callable[[memoryview], int]:
    """`stream.readinto`, or the same made from `read` for a stream without one."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto

    def from_read(view: memoryview) -> int:
        data = stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    return from_read


# -- ranges ---------------------------------------------------------------------------


def _range_pieces(
    backend: Backend, uri: ContentUri, start: int, end: Optional[int]
) -> Iterator[bytes]:
    """The checked bytes of [start, end), in pieces; the first piece is ready on return."""
    manifest = _manifest(backend, uri)
    if manifest is None:
        pieces = _range_of_whole(backend, uri, start, end)
    else:
        _check_range(uri, start, end, manifest.size)
        pieces = _range_of_chunks(
            backend, uri, manifest, start, manifest.size if end is None else end
        )
    first = next(pieces, b"")
    return _prepend(first, pieces)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _check_range(uri: ContentUri, start: int, end: Optional[int], size: int) -> None:
    end = size if end is None else end
    if not 0 <= start <= end <= size:
        raise InvalidInputError(
            f"byte range {start}-{end} is outside sha1://{uri.sha1} ({size} bytes)",
            "choose 0 <= start <= end <= size",
        )


def _manifest(backend: Backend, uri: ContentUri) -> Optional[Manifest]:
    """The URI's manifest, fetched through the backend and checked; None without one."""
    if uri.manifest_sha1 is None:
        return None
    manifest_uri = ContentUri(uri.manifest_sha1)
    try:
        with open_verified(backend, manifest_uri) as stream:
            data = stream.read()
    except NotFoundError:
        return None  # the backend has the object but not its manifest: read it whole
    from kachery_core.store.assembly import check_manifest

    manifest = Manifest.from_bytes(data)
    check_manifest(manifest, uri)
    return manifest


def _range_of_chunks(
    backend: Backend, uri: ContentUri, manifest: Manifest, start: int, end: int
) -> Iterator[bytes]:
    """Each chunk that overlaps [start, end), read and checked, then cut to the range."""
    for chunk in manifest.chunks_for_range(start, end):
        with backend.open_range(uri, chunk.start, chunk.end) as stream:
            data = _read_all(stream)
        received = hashlib.sha1(data).hexdigest()
        if received != chunk.sha1:
            raise mismatch(uri, backend, received, f"(bytes {chunk.start}-{chunk.end})")
        yield data[max(start, chunk.start) - chunk.start : min(end, chunk.end) - chunk.start]


def _range_of_whole(
    backend: Backend, uri: ContentUri, start: int, end: Optional[int]
) -> Iterator[bytes]:
    """The whole object read and checked (kept only as far as the range goes), then cut."""
    kept = tempfile.SpooledTemporaryFile(max_size=SMALL_OBJECT)  # noqa: SIM115 - closed below
    try:
        size = 0
        with open_verified(backend, uri) as stream:
            while True:
                block = stream.read(READ_BLOCK)
                if not block:
                    break
                lo = max(start, size)
                hi = size + len(block) if end is None else min(end, size + len(block))
                if hi > lo:
                    kept.write(block[lo - size : hi - size])
                size += len(block)
        _check_range(uri, start, end, size)
        kept.seek(0)
        while True:
            block = kept.read(READ_BLOCK)
            if not block:
                return
            yield block
    finally:
        kept.close()


def _read_all(stream: BinaryIO) -> bytes:
    parts: List[bytes] = []
    while True:
        block = stream.read(READ_BLOCK)
        if not block:
            return b"".join(parts)
        parts.append(block)


class _PiecesStream(io.RawIOBase):
    """Byte pieces from an iterator, as a readable stream."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        super().__init__()
        self._pieces = pieces
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not len(self._view):
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._view = memoryview(piece)
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._pieces, "close", None)
            if close is not None:
                close()
        super().close()
