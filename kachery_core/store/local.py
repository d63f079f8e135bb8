"""`LocalStorage`: a kachery storage directory on this machine.

The node and the embedded backend both use this class, so there is one implementation
of the layout. Writes are crash-safe: bytes go to a staging file named after this
host and process, are hashed on the way, and are renamed into place only once the hash
is known (and checked, when the caller expected one). A process killed mid-store leaves
only its staging file, which the next store on this host removes. Objects are served
only as regular files reached from the storage directory without following a symlink
(`open_object`). Its parts live beside it: `link_record` (the JSON of a linked file),
`staging` (staging files, `ObjectWriter`), `input_file` (reading a file someone named).

    >>> storage = LocalStorage(Path("~/kachery-storage").expanduser())
    >>> obj = storage.store_file(Path("data.bin"))          # doctest: +SKIP
    >>> storage.find(obj.sha1)                               # doctest: +SKIP
    PosixPath('/home/me/kachery-storage/sha1/..')
"""

from __future__ import annotations

import errno
import io
import os
import stat
import time
from pathlib import Path
from typing import BinaryIO, Optional, Set

from kachery_core.atomic_file import write_atomically
from kachery_core.content.hashing import (
    BLOCK_SIZE,
    HashResult,
    Progress,
    ReadInto,
    hash_file_copy,
    hash_stream,
    sha1_of_bytes,
    sha1_of_file,
    writer_for,
)
from kachery_core.content.manifest import Manifest
from kachery_core.content.uri import check_sha1
from kachery_core.errors import IntegrityError, InvalidInputError, NotFoundError, StaleLinkError
from kachery_core.store.base import FileRange, Storage, StoredObject
from kachery_core.store.input_file import check_regular_file as check_regular_file
from kachery_core.store.input_file import check_unchanged, read_small
from kachery_core.store.input_file import open_input_file as open_input_file
from kachery_core.store.layout import LINK_SUFFIX
from kachery_core.store.link_record import LinkRecord as LinkRecord
from kachery_core.store.origins import DEFAULT_GRACE_PERIOD, make_dirs
from kachery_core.store.present import PresentObjects
from kachery_core.store.present import is_regular as _is_regular
from kachery_core.store.staging import ObjectWriter as ObjectWriter
from kachery_core.store.staging import StagingFile, staging_name, sweep_dead_staging_files
from kachery_core.store.staging import unlink_quietly as unlink_quietly

# `X as X`: names that lived here before link_record, input_file and staging, still
# importable from here.

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK

QUARANTINE_DIR_NAME = "quarantine"

OBJECT_MODE = 0o444
"""Objects are read-only: `load-file` hands out their paths, and nobody should edit them."""

SMALL_OBJECT_SIZE = BLOCK_SIZE
"""Inputs shorter than this are read whole, hashed and written in one piece, no threads."""

_KNOWN_DIRS_LIMIT = 65536
"""Object directories remembered as existing (saves a mkdir per store); bounds memory."""


class LocalStorage(PresentObjects, Storage):
    """Objects in a directory with the kachery layout, and their index of origins and
    recency (`IndexedStorage`, through `PresentObjects`, which finds a hit):
    `max_cache_size` bounds its objects' bytes on write."""

    def __init__(
        self,
        root: Path,
        temp_dir: Optional[Path] = None,
        keep_temp_files: bool = False,
        fsync: bool = False,
        max_cache_size: Optional[int] = None,
        grace_period: float = DEFAULT_GRACE_PERIOD,
    ) -> None:
        super().__init__(root, fsync, max_cache_size, grace_period)
        self.temp_dir = Path(temp_dir) if temp_dir else self.layout.default_temp_dir
        self.keep_temp_files = keep_temp_files
        self._swept = False
        self._temp_dir_made = False
        self._known_dirs: Set[Path] = set()

    # -- reading -------------------------------------------------------------------

    def find(self, sha1: str) -> Optional[Path]:
        path = self.find_present(sha1)  # a symlink or anything else in its place is no object
        if path is not None:
            return path
        record = self.read_link(sha1)
        if record is None:
            return None
        try:
            st = os.stat(record.path)
        except OSError:
            raise StaleLinkError(
                f"sha1://{sha1} was linked to {record.path}, which is gone",
                "store the file again with store-file or link-file",
            ) from None
        changed = record.mismatch(st)
        if changed is not None:
            raise StaleLinkError(
                f"sha1://{sha1} was linked to {record.path}, which has changed since ({changed})",
                "its bytes no longer match the hash; store the file again to get its new URI",
            )
        return Path(record.path)

    def read_link(self, sha1: str) -> Optional[LinkRecord]:
        try:
            data = self.layout.link_path(sha1).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return LinkRecord.from_bytes(data)
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(
                f"corrupt link record {self.layout.link_path(sha1)}", "delete it and link again"
            ) from None

    def require(self, sha1: str) -> Path:
        path = self.find(sha1)
        if path is None:
            raise NotFoundError(f"sha1://{sha1} is not in {self.root}")
        return path

    def open_range(self, sha1: str, start: int = 0, end: Optional[int] = None) -> FileRange:
        path = self.require(sha1)
        if path == self.layout.object_path(sha1):
            file = self.open_object(sha1)
            if file is None:
                raise NotFoundError(f"sha1://{sha1} is not in {self.root}")
        else:  # a linked file, which whoever serves it has checked (the node's path policy)
            file = io.FileIO(path, "rb")
        size = os.fstat(file.fileno()).st_size
        end = size if end is None else end
        if not 0 <= start <= end <= size:
            file.close()
            raise InvalidInputError(
                f"byte range {start}-{end} is outside sha1://{sha1} ({size} bytes)",
                "choose 0 <= start <= end <= size",
            )
        return FileRange(file, start, end - start)

    def open_object(self, sha1: str) -> Optional[io.FileIO]:
        """Object `sha1`'s own file, for serving it: opened from the storage directory down
        without following a symlink at any step, and only if it is a regular file. None
        otherwise (a symlink to the node key planted in sha1/ is never served)."""
        parts = self.layout.object_path(sha1).relative_to(self.root).parts
        try:
            directory = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            for name in parts[:-1]:
                inner = os.open(name, _OPEN_FLAGS | os.O_DIRECTORY, dir_fd=directory)
                os.close(directory)
                directory = inner
            fd = os.open(parts[-1], _OPEN_FLAGS, dir_fd=directory)
        except OSError:  # missing, a symlink (ELOOP), not a directory
            return None
        finally:
            os.close(directory)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return io.FileIO(fd, "rb")

    def load_manifest(self, manifest_sha1: str) -> Manifest:
        return Manifest.from_bytes(self.require(manifest_sha1).read_bytes())

    def verify(self, sha1: str) -> bool:
        return sha1_of_file(self.require(sha1)) == check_sha1(sha1)

    # -- repair --------------------------------------------------------------------

    @property
    def quarantine_dir(self) -> Path:
        """Where damaged entries are moved: outside sha1/, so lookups no longer see them."""
        return self.root / QUARANTINE_DIR_NAME

    def quarantine(self, path: Path, sha1: str) -> Path:
        """Move a damaged object (or link record) aside; a later load fetches a good copy.

        A rename, so it is safe while a node serves the directory: a reader that already
        opened the file keeps the old bytes, a later lookup misses.
        """
        self.quarantine_dir.mkdir(mode=0o700, exist_ok=True)
        suffix = LINK_SUFFIX if path.name.endswith(LINK_SUFFIX) else ""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.quarantine_dir / f"{check_sha1(sha1)}{suffix}.{stamp}-{os.urandom(3).hex()}"
        os.rename(path, target)
        return target

    # -- writing -------------------------------------------------------------------

    def store_file(self, path: Path, progress: Optional[Progress] = None) -> StoredObject:
        with open_input_file(path) as (source, st):
            return self.store_open_file(source, st, str(path), progress)

    def store_open_file(
        self,
        source: io.FileIO,
        st: os.stat_result,
        shown: str,
        progress: Optional[Progress] = None,
    ) -> StoredObject:
        """Store an open regular file whose stat at opening was `st`. A file that changes
        while it is read is refused before anything is kept (`check_unchanged`)."""
        if st.st_size < SMALL_OBJECT_SIZE:
            data = read_small(source, st.st_size)
            check_unchanged(source.fileno(), st, len(data), shown)
            stored = self._store_in_one_piece(data)
            if progress is not None and data:
                progress(len(data))
            return stored
        with self._staging_file() as staging:
            result = hash_file_copy(source.fileno(), staging.file.fileno(), st.st_size, progress)
            if result is None:  # no kernel copy between these files: read and write
                result = hash_stream(
                    source.readinto, writer_for(staging.file), st.st_size, progress
                )
            check_unchanged(source.fileno(), st, result.size, shown)
            return self._commit(staging, result)

    def store_stream(
        self,
        stream: BinaryIO,
        expected_sha1: Optional[str] = None,
        progress: Optional[Progress] = None,
    ) -> StoredObject:
        read_into = getattr(stream, "readinto", None) or _readinto_from_read(stream)
        with self._staging_file() as staging:
            result = hash_stream(read_into, writer_for(staging.file), None, progress)
            return self._commit(staging, result, expected_sha1)

    def store_bytes(
        self, data: bytes, expected_sha1: Optional[str] = None, cached: Optional[bool] = None
    ) -> StoredObject:
        """`cached=False`: a store whose sender named the hash (small objects only)."""
        if len(data) < SMALL_OBJECT_SIZE:
            return self._store_in_one_piece(data, expected_sha1, cached)
        return self.store_stream(io.BytesIO(data), expected_sha1)

    def object_writer(self, manifest: bool = True) -> ObjectWriter:
        """An incremental writer, for bytes that arrive in pieces (a network body).

        `manifest=False` skips the chunk hashes (a second SHA-1 pass) for a download whose
        manifest the sender already has; no manifest object is made then.
        """
        return ObjectWriter(self, manifest)

    def adopt_verified(self, path: Path, sha1: str) -> Path:
        """Move a file whose SHA-1 the caller has checked into place as object `sha1`.

        For downloads that outlive a process (see `resumable.py`) and so cannot use a
        staging file; the file must be in `temp_dir` (same filesystem) and is consumed.
        """
        if self.fsync:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        final = self.layout.object_path(check_sha1(sha1))
        self._note_write(sha1, os.stat(path).st_size, True, final)
        self._place(path, final)
        self._after_cached_write()
        return final

    def link_file(self, path: Path, progress: Optional[Progress] = None) -> StoredObject:
        real = Path(os.path.realpath(path))
        with open_input_file(real) as (source, st):
            return self.link_open_file(source, st, real, progress)

    def link_open_file(
        self,
        source: io.FileIO,
        st: os.stat_result,
        real: Path,
        progress: Optional[Progress] = None,
    ) -> StoredObject:
        """Link the open file at `real` (its real path): hash it, then write its manifest and
        link record, unless it changed while it was read (then nothing is written)."""
        result = hash_stream(source.readinto, None, st.st_size, progress)
        check_unchanged(source.fileno(), st, result.size, str(real))
        manifest_sha1 = self._store_manifest(result)
        if _is_regular(self.layout.object_path(result.sha1)):
            self._note_link(result.sha1, result.size, is_link=False)  # linking pins it
        else:
            self._note_link(result.sha1, result.size, is_link=True)
            record = LinkRecord.for_file(str(real), st, manifest_sha1)
            self._write_small_file(self.layout.link_path(result.sha1), record.to_bytes())
        return StoredObject(result.sha1, result.size, manifest_sha1)

    # -- internals -----------------------------------------------------------------

    def _staging_file(self) -> StagingFile:
        if not self._temp_dir_made:
            make_dirs(self.temp_dir, self.shared_group_mode)
            self._temp_dir_made = True
        self._sweep_dead_staging_files()
        path = self.temp_dir / staging_name()
        try:
            return StagingFile(path, self.keep_temp_files)
        except FileNotFoundError:  # the temp dir was removed since
            self.temp_dir.mkdir(parents=True, exist_ok=True)
            return StagingFile(path, self.keep_temp_files)

    def _store_in_one_piece(
        self, data: bytes, expected_sha1: Optional[str] = None, cached: Optional[bool] = None
    ) -> StoredObject:
        """Store a small object: hash, then write it unless an identical object is there.
        `cached`: a fetch (default: when a hash was expected), else a store (pinned)."""
        sha1 = sha1_of_bytes(data)
        cached = expected_sha1 is not None if cached is None else cached
        if expected_sha1 is not None and sha1 != check_sha1(expected_sha1):
            raise IntegrityError(
                f"received bytes hash to {sha1}, expected {expected_sha1}",
                "the source is corrupt or the transfer was damaged; nothing was stored",
            )
        final = self.layout.object_path(sha1)
        self._note_write(sha1, len(data), cached, final)
        if _holds_exactly(final, data):
            # Already stored (checked byte for byte, so a damaged copy is replaced below).
            unlink_quietly(final.with_name(final.name + LINK_SUFFIX))
        else:
            with self._staging_file() as staging:
                writer_for(staging.file)(memoryview(data))
                staging.finish(self.fsync)
                self._place(staging.path, final)
                staging.committed = True
            if cached:
                self._after_cached_write()
        return StoredObject(sha1, len(data), None)

    def _commit(
        self, staging: StagingFile, result: HashResult, expected_sha1: Optional[str] = None
    ) -> StoredObject:
        if expected_sha1 is not None and result.sha1 != check_sha1(expected_sha1):
            where = f" (kept at {staging.path})" if self.keep_temp_files else ""
            raise IntegrityError(
                f"received bytes hash to {result.sha1}, expected {expected_sha1}{where}",
                "the source is corrupt or the transfer was damaged; nothing was stored",
            )
        staging.finish(self.fsync)
        final = self.layout.object_path(result.sha1)
        cached = expected_sha1 is not None
        self._note_write(result.sha1, result.size, cached, final)
        self._place(staging.path, final)
        staging.committed = True
        stored = StoredObject(result.sha1, result.size, self._store_manifest(result, cached))
        if cached:
            self._after_cached_write()
        return stored

    def _store_manifest(self, result: HashResult, cached: bool = False) -> Optional[str]:
        """Store a manifest with the origin of the object it describes."""
        if result.manifest is None:
            return None
        data = result.manifest.to_bytes()
        if len(data) < SMALL_OBJECT_SIZE:
            return self._store_in_one_piece(data, cached=cached).sha1
        with self._staging_file() as staging:
            writer_for(staging.file)(memoryview(data))
            hashed = HashResult(sha1_of_bytes(data), len(data), None)
            return self._commit(staging, hashed, hashed.sha1 if cached else None).sha1

    def _place(self, staged: Path, final: Path) -> None:
        """Rename a finished staging file into place; the object appears atomically."""
        self._make_dir(final.parent)
        os.chmod(staged, OBJECT_MODE)
        try:
            try:
                os.replace(staged, final)
            except FileNotFoundError:  # its directory was removed since we made it
                self._known_dirs.discard(final.parent)
                self._make_dir(final.parent)
                os.replace(staged, final)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # The temp dir is on another filesystem: copy beside the object, then rename.
            beside = final.with_name(f".{final.name}.{staging_name()}")
            try:
                import shutil

                shutil.copyfile(staged, beside)
                os.chmod(beside, OBJECT_MODE)
                os.replace(beside, final)
            finally:
                unlink_quietly(beside)
            os.unlink(staged)
        link = final.with_name(final.name + ".link")
        unlink_quietly(link)  # a real copy supersedes any link record

    def _make_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        make_dirs(directory, self.shared_group_mode)
        if len(self._known_dirs) >= _KNOWN_DIRS_LIMIT:
            self._known_dirs.clear()
        self._known_dirs.add(directory)

    def _write_small_file(self, final: Path, data: bytes) -> None:
        self._make_dir(final.parent)
        write_atomically(
            final, data, mode=0o640 if self.shared_group_mode else 0o600, fsync=self.fsync
        )

    def _sweep_dead_staging_files(self) -> None:
        """Once per process: staging files of dead processes of this host go."""
        if self._swept or self.keep_temp_files:
            return
        self._swept = True
        sweep_dead_staging_files(self.temp_dir)


def _holds_exactly(path: Path, data: bytes) -> bool:
    """Whether the file at `path` exists and holds exactly `data`."""
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(len(data) + 1) == data
    except OSError:
        return False


def _readinto_from_read(stream: BinaryIO) -> ReadInto:
    def read_into(view: memoryview) -> int:
        data = stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    return read_into
