"""Making an object from pieces a storage already holds: a chunk cut from its whole file,
or a whole file assembled from its manifest's chunks.

A node and the storage-backed client backends (`local`, `offline`) answer a load the same
way, so the rule lives here, beside the storage it works on: a plain lookup first, then a
chunk (`?chunkOf=`) cut from its whole, then a whole (`?manifest=`) joined from its chunks.
Either way the new object is written through a staging file and hash-checked before it
appears, so a damaged piece raises `IntegrityError` and stores nothing.

A manifest is checked before a byte is written (`check_manifest`: it is the manifest of
this very object, and its chunks are the 20,000,000-byte cut of its size), and each chunk
is checked as it is read: its size before, its hash at its end. So a manifest that lists
one small object many times is refused at once, and staging never holds more than the
manifest's honest size, however the pieces are damaged.

    >>> path = find_or_assemble(storage, uri)      # doctest: +SKIP
    >>> path is None                               # doctest: +SKIP
    False
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Sequence, cast

from kachery_core.content.manifest import CHUNK_SIZE, Chunk, Manifest
from kachery_core.content.uri import ContentUri
from kachery_core.errors import IntegrityError
from kachery_core.store.base import FileRange
from kachery_core.store.local import LocalStorage


def find_or_assemble(storage: LocalStorage, uri: ContentUri) -> Optional[Path]:
    """The path of `uri`'s bytes in `storage`, made from pieces present if need be.

    None when neither the object nor the pieces to make it are there; `IntegrityError`
    when the pieces are there but their bytes do not hash to `uri`; `StaleLinkError` when
    the object is a link whose file has changed.
    """
    path = storage.find(uri.sha1)
    if path is None and uri.chunk_of is not None:
        path = cut_chunk(storage, uri)
    if path is None and uri.manifest_sha1 is not None:
        path = assemble_from_manifest(storage, uri)
    return path


def cut_chunk(storage: LocalStorage, uri: ContentUri) -> Optional[Path]:
    """Store bytes [start, end) of the whole file `uri.chunk_of` names as object `uri.sha1`."""
    chunk = uri.chunk_of
    if chunk is None or not storage.has(chunk.sha1):
        return None
    with storage.open_range(chunk.sha1, chunk.start, chunk.end) as part:
        storage.store_stream(cast(BinaryIO, part), expected_sha1=uri.sha1)
    return storage.find(uri.sha1)


def assemble_from_manifest(storage: LocalStorage, uri: ContentUri) -> Optional[Path]:
    """Store the chunks `uri.manifest_sha1` lists, one after another, as object `uri.sha1`."""
    if uri.manifest_sha1 is None or not storage.has(uri.manifest_sha1):
        return None
    manifest = storage.load_manifest(uri.manifest_sha1)  # chunks tile 0..size, or refused
    check_manifest(manifest, uri)
    if not all(storage.has(c.sha1) for c in manifest.chunks):
        return None
    with ChainedObjects(storage, manifest.chunks) as chained:
        storage.store_stream(cast(BinaryIO, chained), expected_sha1=uri.sha1)
    return storage.find(uri.sha1)


def has_some_chunks(storage: LocalStorage, manifest: Manifest) -> bool:
    """True when a lazy read (or an interrupted load) left some of the chunks here."""
    return any(storage.has(c.sha1) for c in manifest.chunks)


def assemble_fetching_missing(
    storage: LocalStorage,
    uri: ContentUri,
    manifest: Manifest,
    open_range: Callable[[int, int], BinaryIO],
    progress: Optional[Callable[[int], None]] = None,
) -> Optional[Path]:
    """Fetch the chunks of `uri` not yet in `storage` (`open_range(start, end)` streams
    them), each kept only if it is its manifest's length and hash, then join them all.

    So a load after a lazy read moves only what is still missing.
    """
    check_manifest(manifest, uri)
    for chunk in manifest.chunks:
        if not storage.has(chunk.sha1):
            _fetch_chunk(storage, uri, chunk, open_range)
        if progress is not None:
            progress(chunk.end)
    return assemble_from_manifest(storage, uri)


def _fetch_chunk(
    storage: LocalStorage, uri: ContentUri, chunk: Chunk, open_range: Callable[[int, int], BinaryIO]
) -> None:
    what = f"{uri} chunk sha1://{chunk.sha1} (bytes {chunk.start}-{chunk.end})"
    length = chunk.end - chunk.start
    with open_range(chunk.start, chunk.end) as stream, storage.object_writer(
        manifest=False
    ) as writer:
        while True:
            block = stream.read(1 << 20)
            if not block:
                break
            writer.write(block)
            if writer.size > length:
                raise IntegrityError(
                    f"{what}: more than {length} bytes arrived", "nothing was kept"
                )
        try:
            writer.commit(expected_sha1=chunk.sha1)
        except IntegrityError as exc:
            raise IntegrityError(f"{what}: {exc.message}", exc.hint) from None


def check_manifest(manifest: Manifest, uri: ContentUri) -> None:
    """`IntegrityError` unless `manifest` can honestly describe `uri`'s object: its own hash
    is `uri.sha1`, and every chunk but the last is CHUNK_SIZE bytes, the last at most that.
    (Tiling from 0 to the size is checked when a manifest is parsed.)"""
    if manifest.sha1 != uri.sha1:
        raise IntegrityError(
            f"manifest {uri.manifest_sha1} describes sha1://{manifest.sha1}, not sha1://{uri.sha1}"
        )
    last = len(manifest.chunks) - 1
    for i, chunk in enumerate(manifest.chunks):
        length = chunk.end - chunk.start
        if length > CHUNK_SIZE or (i < last and length != CHUNK_SIZE):
            raise IntegrityError(
                f"manifest {uri.manifest_sha1} is malformed: chunk {i} has {length} bytes, "
                f"but chunks are {CHUNK_SIZE} bytes (the last may be shorter)"
            )


class ChainedObjects(io.RawIOBase):
    """The chunks of a manifest, read one after another as a single stream.

    Each chunk object must have the length the manifest gives it (checked before it is
    read) and hash to its SHA-1 (checked at its end): `IntegrityError` at the first that
    does not, so a bad piece stops the stream within one chunk.
    """

    def __init__(self, storage: LocalStorage, chunks: Sequence[Chunk]) -> None:
        super().__init__()
        self._parts: Iterator[Chunk] = iter(chunks)
        self._storage = storage
        self._chunk: Optional[Chunk] = None
        self._current: Optional[FileRange] = None
        import hashlib

        self._hash = hashlib.sha1()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            if self._current is None:
                self._chunk = next(self._parts, None)
                if self._chunk is None:
                    return 0
                self._current = self._open(self._chunk)
                import hashlib

                self._hash = hashlib.sha1()
            n = self._current.readinto(buffer)
            if n:
                self._hash.update(memoryview(buffer)[:n])
                return n
            self._current.close()
            self._current = None
            assert self._chunk is not None
            if self._hash.hexdigest() != self._chunk.sha1:
                raise IntegrityError(
                    f"chunk sha1://{self._chunk.sha1} (bytes {self._chunk.start}-"
                    f"{self._chunk.end}) is damaged: its bytes hash to {self._hash.hexdigest()}",
                    "store the file again; nothing was assembled",
                )

    def _open(self, chunk: Chunk) -> FileRange:
        part = self._storage.open_range(chunk.sha1)
        if part.length != chunk.end - chunk.start:
            part.close()
            raise IntegrityError(
                f"chunk sha1://{chunk.sha1} has {part.length} bytes, but the manifest says "
                f"{chunk.end - chunk.start} (bytes {chunk.start}-{chunk.end})",
                "the manifest or the chunk is damaged; nothing was assembled",
            )
        return part

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()
