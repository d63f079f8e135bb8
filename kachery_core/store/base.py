"""The `Storage` interface: what a place that holds kachery objects can do.

A node and the embedded backend both use `LocalStorage` (in `local_storage`), the one
implementation of the on-disk layout; other storages (a cache, a remote mirror) may
implement this interface too.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO, Optional

from kachery_core.content.hashing import Progress
from kachery_core.content.uri import ContentUri
from kachery_core.records import dataclass


@dataclass(frozen=True)
class StoredObject:
    """What a store or link produced: the hash, the size, and the manifest if large."""

    sha1: str
    size: int
    manifest_sha1: Optional[str] = None

    def uri(self, label: Optional[str] = None) -> ContentUri:
        return ContentUri.for_hash(self.sha1, label, self.manifest_sha1)


class FileRange(io.RawIOBase):
    """Bytes [offset, offset + length) of an open file, readable as a stream.

    It keeps the real file descriptor visible (`fileno`, `offset`, `length`) so that a
    consumer can hand the copy to the kernel (`os.sendfile`) instead of looping in Python.
    """

    def __init__(self, file: BinaryIO, offset: int, length: int) -> None:
        super().__init__()
        self._file = file
        self.offset = offset
        self.length = length
        self._position = 0
        file.seek(offset)

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self.length - self._position)
        if want <= 0:
            return 0
        n = self._file.readinto(memoryview(buffer)[:want]) or 0  # type: ignore[attr-defined]
        self._position += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class Storage(ABC):
    """A content-addressed object store."""

    @abstractmethod
    def find(self, sha1: str) -> Optional[Path]:
        """The local path holding the object's bytes, or None if absent.

        Raises `StaleLinkError` when the object is a link whose original has changed.
        """

    @abstractmethod
    def store_file(self, path: Path, progress: Optional[Progress] = None) -> StoredObject:
        """Copy a file in, hashing it on the way; the object appears atomically."""

    @abstractmethod
    def store_stream(
        self,
        stream: BinaryIO,
        expected_sha1: Optional[str] = None,
        progress: Optional[Progress] = None,
    ) -> StoredObject:
        """Store bytes read from `stream` to its end; refuse them if not `expected_sha1`."""

    @abstractmethod
    def link_file(self, path: Path, progress: Optional[Progress] = None) -> StoredObject:
        """Record where a file is instead of copying it; served only while unchanged."""

    @abstractmethod
    def open_range(self, sha1: str, start: int = 0, end: Optional[int] = None) -> FileRange:
        """Open bytes [start, end) of an object; `NotFoundError` if absent."""

    @abstractmethod
    def verify(self, sha1: str) -> bool:
        """Re-hash an object; True when its bytes still match its name."""

    def has(self, sha1: str) -> bool:
        try:
            return self.find(sha1) is not None
        except FileNotFoundError:
            return False
