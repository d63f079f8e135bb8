"""Downloads that survive interruption: a 1 GiB load cut at 900 MB restarts at 900 MB.

The bytes go to `<temp_dir>/<sha1>.download`, named by the object so that the next
attempt (in any process) finds them. Nothing there is trusted: before resuming, the
existing prefix is checked chunk by chunk against the manifest, and only whole chunks whose
SHA-1 matches are kept. The object appears (atomically, by rename) only after the SHA-1 of
the whole file matches. Two processes loading the same object take turns (a file lock),
so they never write the same file at once.

    with ResumableDownload(storage, uri.sha1, manifest) as download:
        offset = download.verified_size()
        ... stream bytes [offset, size) with hash_stream(..., resume=download.whole)
        path = download.commit()
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Optional

from .errors import IntegrityError
from .local_storage import LocalStorage, unlink_quietly
from .manifest import Manifest

SUFFIX = ".download"
READ_BLOCK = 4 << 20


def download_path(storage: LocalStorage, sha1: str) -> Path:
    """Where a resumable download of object `sha1` keeps its bytes, whoever runs it."""
    return storage.temp_dir / f"{sha1}{SUFFIX}"


class ResumableDownload:
    def __init__(self, storage: LocalStorage, sha1: str, manifest: Optional[Manifest]) -> None:
        self.storage = storage
        self.sha1 = sha1
        self.manifest = manifest
        self.path = download_path(storage, sha1)
        self.whole: Any = hashlib.sha1()
        self.file: Optional[BinaryIO] = None
        self._committed = False

    def __enter__(self) -> ResumableDownload:
        import fcntl

        self.storage.temp_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits while another process is on this object
        self.file = os.fdopen(fd, "r+b", buffering=0)
        return self

    def done_elsewhere(self) -> Optional[Path]:
        """The object, if another process finished it while we waited for the lock."""
        return self.storage.find(self.sha1)

    def verified_size(self) -> int:
        """Keep the prefix made of whole, verified chunks; return its length."""
        assert self.file is not None
        size = os.fstat(self.file.fileno()).st_size
        kept = 0
        if self.manifest is not None:
            self.file.seek(0)
            for chunk in self.manifest.chunks:
                if chunk.end > size:
                    break
                chunk_hash, before = hashlib.sha1(), self.whole.copy()
                remaining = chunk.end - chunk.start
                while remaining:
                    block = self.file.read(min(READ_BLOCK, remaining))
                    if not block:
                        break
                    chunk_hash.update(block)
                    self.whole.update(block)
                    remaining -= len(block)
                if remaining or chunk_hash.hexdigest() != chunk.sha1:
                    self.whole = before
                    break
                kept = chunk.end
        self.file.truncate(kept)
        self.file.seek(kept)
        return kept

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
        keep = not self._committed and self.manifest is not None and self.file.tell() > 0
        if not self._committed and not keep:
            unlink_quietly(self.path)
        self.file.close()  # releases the lock
