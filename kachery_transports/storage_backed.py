"""What the `local` and `offline` backends share: loading from a `LocalStorage`.

Beyond a plain lookup, a load can be satisfied from pieces already present: a chunk
(`?chunkOf=`) cut from its whole file, or a whole file (`?manifest=`) assembled from its
chunks. Either way the bytes are hash-checked before the object appears.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, cast

from kachery_core.errors import NotFoundError
from kachery_core.hashing import Progress
from kachery_core.local_storage import LocalStorage
from kachery_core.transport import DaemonTransport, NodeInfo
from kachery_core.uri import ContentUri


class StorageBackedTransport(DaemonTransport):
    """A transport whose objects are files in a `LocalStorage` on this machine."""

    storage: LocalStorage

    def describe_location(self) -> str:
        return f"{self.storage.root} ({self.name} backend)"

    def node_info(self) -> NodeInfo:
        return NodeInfo(self.name, self.storage.layout.read_node_id(), str(self.storage.root))

    def find_path(self, uri: ContentUri) -> Path:
        """The path of the object's bytes, assembling it from parts present if needed."""
        path = self.storage.find(uri.sha1)
        if path is None and uri.chunk_of is not None:
            path = self._cut_chunk(uri)
        if path is None and uri.manifest_sha1 is not None:
            path = self._assemble_from_chunks(uri)
        if path is None:
            raise NotFoundError(
                f"{uri} not found in {self.describe_location()}", self.not_found_hint()
            )
        return path

    def not_found_hint(self) -> str:
        return "store it there first, or use a node that has it"

    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        return str(self.find_path(uri))

    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        self.find_path(uri)
        return self.storage.open_range(uri.sha1, start, end)  # type: ignore[return-value]

    def _cut_chunk(self, uri: ContentUri) -> Optional[Path]:
        chunk = uri.chunk_of
        assert chunk is not None
        if not self.storage.has(chunk.sha1):
            return None
        with self.storage.open_range(chunk.sha1, chunk.start, chunk.end) as part:
            self.storage.store_stream(cast(BinaryIO, part), expected_sha1=uri.sha1)
        return self.storage.find(uri.sha1)

    def _assemble_from_chunks(self, uri: ContentUri) -> Optional[Path]:
        assert uri.manifest_sha1 is not None
        if not self.storage.has(uri.manifest_sha1):
            return None
        manifest = self.storage.load_manifest(uri.manifest_sha1)
        if not all(self.storage.has(c.sha1) for c in manifest.chunks):
            return None
        chained = _ChainedObjects(self.storage, [c.sha1 for c in manifest.chunks])
        self.storage.store_stream(cast(BinaryIO, chained), uri.sha1)
        return self.storage.find(uri.sha1)


class _ChainedObjects(io.RawIOBase):
    """The objects named by `hashes`, read one after another as a single stream."""

    def __init__(self, storage: LocalStorage, hashes: list[str]) -> None:
        super().__init__()
        self._parts: Iterator[str] = iter(hashes)
        self._storage = storage
        self._current: Optional[BinaryIO] = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            if self._current is None:
                sha1 = next(self._parts, None)
                if sha1 is None:
                    return 0
                self._current = self._storage.open_range(sha1)  # type: ignore[assignment]
            assert self._current is not None
            n = self._current.readinto(buffer)  # type: ignore[attr-defined]
            if n:
                return n
            self._current.close()
            self._current = None
