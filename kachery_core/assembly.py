"""Making an object from pieces a storage already holds: a chunk cut from its whole file,
or a whole file assembled from its manifest's chunks.

A node and the storage-backed client backends (`local`, `offline`) answer a load the same
way, so the rule lives here, beside the storage it works on: a plain lookup first, then a
chunk (`?chunkOf=`) cut from its whole, then a whole (`?manifest=`) joined from its chunks.
Either way the new object is written through a staging file and hash-checked before it
appears, so a damaged piece raises `IntegrityError` and stores nothing.

    >>> path = find_or_assemble(storage, uri)      # doctest: +SKIP
    >>> path is None                               # doctest: +SKIP
    False
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Iterator, List, Optional, cast

from .local_storage import LocalStorage
from .storage import FileRange
from .uri import ContentUri


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
    manifest = storage.load_manifest(uri.manifest_sha1)
    if not all(storage.has(c.sha1) for c in manifest.chunks):
        return None
    with ChainedObjects(storage, [c.sha1 for c in manifest.chunks]) as chained:
        storage.store_stream(cast(BinaryIO, chained), expected_sha1=uri.sha1)
    return storage.find(uri.sha1)


class ChainedObjects(io.RawIOBase):
    """The objects named by `hashes`, read one after another as a single stream."""

    def __init__(self, storage: LocalStorage, hashes: List[str]) -> None:
        super().__init__()
        self._parts: Iterator[str] = iter(hashes)
        self._storage = storage
        self._current: Optional[FileRange] = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            if self._current is None:
                sha1 = next(self._parts, None)
                if sha1 is None:
                    return 0
                self._current = self._storage.open_range(sha1)
            n = self._current.readinto(buffer)
            if n:
                return n
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()
