"""`LocalStorage`: a kachery storage directory on this machine.

The node and the embedded backend both use this class, so there is one implementation
of the layout. Writes are crash-safe: bytes go to a staging file named after this
host and process, are hashed on the way, and are renamed into place only once the hash
is known (and checked, when the caller expected one). A process killed mid-store leaves
only its staging file, which the next store on this host removes.

    >>> storage = LocalStorage(Path("~/kachery-storage").expanduser())
    >>> obj = storage.store_file(Path("data.bin"))          # doctest: +SKIP
    >>> storage.find(obj.sha1)                               # doctest: +SKIP
    PosixPath('/home/me/kachery-storage/sha1/..')
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Optional, Set, TypeVar

from kachery_core.atomic_file import write_atomically
from kachery_core.content.hashing import (
    BLOCK_SIZE,
    HashResult,
    Progress,
    ReadInto,
    _ChunkHasher,
    hash_file_copy,
    hash_stream,
    sha1_of_bytes,
    sha1_of_file,
    writer_for,
)
from kachery_core.content.manifest import MANIFEST_THRESHOLD, Manifest
from kachery_core.content.uri import check_sha1
from kachery_core.errors import IntegrityError, InvalidInputError, NotFoundError, StaleLinkError
from kachery_core.store.base import FileRange, Storage, StoredObject
from kachery_core.store.layout import LINK_SUFFIX, StorageLayout

T = TypeVar("T")

QUARANTINE_DIR_NAME = "quarantine"

OBJECT_MODE = 0o444
"""Objects are read-only: `load-file` hands out their paths, and nobody should edit them."""

SMALL_OBJECT_SIZE = BLOCK_SIZE
"""Inputs shorter than this are read whole, hashed and written in one piece, no threads."""

_KNOWN_DIRS_LIMIT = 65536
"""Object directories remembered as existing (saves a mkdir per store); bounds memory."""


@dataclass(frozen=True)
class LinkRecord:
    """The JSON beside an object's path that stands in for a linked file.

    `stat` holds size and mtime (the original protocol) and, since records written by
    this version, the inode, device and ctime: an edit whose size and mtime were put
    back (`os.utime`) still changes the ctime, and a file replaced by another has a new
    inode. Records without them are still read and checked on size and mtime alone.
    """

    path: str
    size: int
    mtime: float
    manifest_hash: Optional[str] = None
    ino: Optional[int] = None
    dev: Optional[int] = None
    ctime: Optional[float] = None

    @classmethod
    def for_file(cls, path: str, st: os.stat_result, manifest_hash: Optional[str]) -> LinkRecord:
        return cls(path, st.st_size, st.st_mtime, manifest_hash, st.st_ino, st.st_dev, st.st_ctime)

    def to_bytes(self) -> bytes:
        st: Dict[str, object] = {"size": self.size, "mtime": self.mtime}
        for key in ("ino", "dev", "ctime"):
            value = getattr(self, key)
            if value is not None:
                st[key] = value
        doc = {"path": self.path, "manifest_hash": self.manifest_hash, "stat": st}
        return json.dumps(doc).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LinkRecord:
        doc = json.loads(data)
        st = doc["stat"]
        return cls(
            str(doc["path"]),
            int(st["size"]),
            float(st["mtime"]),
            doc.get("manifest_hash"),
            _optional(int, st.get("ino")),
            _optional(int, st.get("dev")),
            _optional(float, st.get("ctime")),
        )

    def mismatch(self, st: os.stat_result) -> Optional[str]:
        """What differs between the record and the file's stat now, or None if nothing."""
        checks = (
            ("size", self.size, st.st_size),
            ("mtime", self.mtime, st.st_mtime),
            ("inode", self.ino, st.st_ino),
            ("device", self.dev, st.st_dev),
            ("ctime", self.ctime, st.st_ctime),
        )
        for name, recorded, now in checks:
            if recorded is not None and recorded != now:
                return f"{name} {now}, recorded {recorded}"
        return None

    def matches(self, st: os.stat_result) -> bool:
        return self.mismatch(st) is None


def _optional(parse: Callable[[Any], T], value: Any) -> Optional[T]:
    return None if value is None else parse(value)


class LocalStorage(Storage):
    """Objects in a directory with the kachery layout."""

    def __init__(
        self,
        root: Path,
        temp_dir: Optional[Path] = None,
        keep_temp_files: bool = False,
        fsync: bool = False,
    ) -> None:
        self.layout = StorageLayout(Path(root))
        self.root = self.layout.root
        self.temp_dir = Path(temp_dir) if temp_dir else self.layout.default_temp_dir
        self.keep_temp_files = keep_temp_files
        self.fsync = fsync
        self._swept = False
        self._temp_dir_made = False
        self._known_dirs: Set[Path] = set()

    # -- reading -------------------------------------------------------------------

    def find(self, sha1: str) -> Optional[Path]:
        path = self.layout.object_path(sha1)
        if path.is_file():
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
        file = open(path, "rb", buffering=0)  # noqa: SIM115 - owned by the FileRange
        size = os.fstat(file.fileno()).st_size
        end = size if end is None else end
        if not 0 <= start <= end <= size:
            file.close()
            raise InvalidInputError(
                f"byte range {start}-{end} is outside sha1://{sha1} ({size} bytes)",
                "choose 0 <= start <= end <= size",
            )
        return FileRange(file, start, end - start)

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
            if st.st_size < SMALL_OBJECT_SIZE:
                data = _read_small(source, st.st_size)
                _check_unchanged(path, st, HashResult("", len(data), None))
                stored = self._store_in_one_piece(data)
                if progress is not None and data:
                    progress(len(data))
                return stored
            with self._staging_file() as staging:
                result = hash_file_copy(
                    source.fileno(), staging.file.fileno(), st.st_size, progress
                )
                if result is None:  # no kernel copy between these files: read and write
                    result = hash_stream(
                        source.readinto, writer_for(staging.file), st.st_size, progress
                    )
                _check_unchanged(path, st, result)
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

    def store_bytes(self, data: bytes, expected_sha1: Optional[str] = None) -> StoredObject:
        if len(data) < SMALL_OBJECT_SIZE:
            return self._store_in_one_piece(data, expected_sha1)
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
        self._place(path, final)
        return final

    def link_file(self, path: Path, progress: Optional[Progress] = None) -> StoredObject:
        real = Path(os.path.realpath(path))
        with open_input_file(real) as (source, st):
            result = hash_stream(source.readinto, None, st.st_size, progress)
            _check_unchanged(real, st, result)
        manifest_sha1 = self._store_manifest(result)
        if not self.layout.object_path(result.sha1).is_file():
            record = LinkRecord.for_file(str(real), st, manifest_sha1)
            self._write_small_file(self.layout.link_path(result.sha1), record.to_bytes())
        return StoredObject(result.sha1, result.size, manifest_sha1)

    # -- internals -----------------------------------------------------------------

    def _staging_file(self) -> _StagingFile:
        if not self._temp_dir_made:
            self.temp_dir.mkdir(parents=True, exist_ok=True)
            self._temp_dir_made = True
        self._sweep_dead_staging_files()
        path = self.temp_dir / _staging_name()
        try:
            return _StagingFile(path, self.keep_temp_files)
        except FileNotFoundError:  # the temp dir was removed since
            self.temp_dir.mkdir(parents=True, exist_ok=True)
            return _StagingFile(path, self.keep_temp_files)

    def _store_in_one_piece(self, data: bytes, expected_sha1: Optional[str] = None) -> StoredObject:
        """Store a small object: hash, then write it unless an identical object is there."""
        sha1 = sha1_of_bytes(data)
        if expected_sha1 is not None and sha1 != check_sha1(expected_sha1):
            raise IntegrityError(
                f"received bytes hash to {sha1}, expected {expected_sha1}",
                "the source is corrupt or the transfer was damaged; nothing was stored",
            )
        final = self.layout.object_path(sha1)
        if _holds_exactly(final, data):
            # Already stored (checked byte for byte, so a damaged copy is replaced below).
            unlink_quietly(final.with_name(final.name + LINK_SUFFIX))
        else:
            with self._staging_file() as staging:
                writer_for(staging.file)(memoryview(data))
                staging.finish(self.fsync)
                self._place(staging.path, final)
                staging.committed = True
        return StoredObject(sha1, len(data), None)

    def _commit(
        self, staging: _StagingFile, result: HashResult, expected_sha1: Optional[str] = None
    ) -> StoredObject:
        if expected_sha1 is not None and result.sha1 != check_sha1(expected_sha1):
            where = f" (kept at {staging.path})" if self.keep_temp_files else ""
            raise IntegrityError(
                f"received bytes hash to {result.sha1}, expected {expected_sha1}{where}",
                "the source is corrupt or the transfer was damaged; nothing was stored",
            )
        staging.finish(self.fsync)
        self._place(staging.path, self.layout.object_path(result.sha1))
        staging.committed = True
        return StoredObject(result.sha1, result.size, self._store_manifest(result))

    def _store_manifest(self, result: HashResult) -> Optional[str]:
        if result.manifest is None:
            return None
        return self.store_bytes(result.manifest.to_bytes()).sha1

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
            beside = final.with_name(f".{final.name}.{_staging_name()}")
            try:
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
        directory.mkdir(parents=True, exist_ok=True)
        if len(self._known_dirs) >= _KNOWN_DIRS_LIMIT:
            self._known_dirs.clear()
        self._known_dirs.add(directory)

    def _write_small_file(self, final: Path, data: bytes) -> None:
        self._make_dir(final.parent)
        write_atomically(final, data, mode=0o600, fsync=self.fsync)

    def _sweep_dead_staging_files(self) -> None:
        """Remove staging files left by processes of this host that no longer exist."""
        if self._swept or self.keep_temp_files:
            return
        self._swept = True
        prefix = f"{_HOST}-"
        try:
            names = os.listdir(self.temp_dir)
        except OSError:
            return
        for name in names:
            if not (name.startswith(prefix) and name.endswith(".part")):
                continue
            pid_text = name[len(prefix) :].split("-", 1)[0]
            if pid_text.isdigit() and not _process_exists(int(pid_text)):
                unlink_quietly(self.temp_dir / name)


class ObjectWriter:
    """Write an object piece by piece, then `commit()` it (or `abort()`).

    >>> with storage.object_writer() as writer:          # doctest: +SKIP
    ...     for piece in body:
    ...         writer.write(piece)
    ...     stored = writer.commit(expected_sha1=None)
    """

    def __init__(self, storage: LocalStorage, manifest: bool = True) -> None:
        self._storage = storage
        self._staging = storage._staging_file()
        self._whole = hashlib.sha1()
        self._chunks = _ChunkHasher() if manifest else None
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self._whole.update(view)
        if self._chunks is not None:
            self._chunks.update(view)
        writer_for(self._staging.file)(view)
        self.size += len(view)

    def commit(self, expected_sha1: Optional[str] = None) -> StoredObject:
        manifest = None
        if self.size > MANIFEST_THRESHOLD and self._chunks is not None:
            manifest = Manifest(self.size, self._whole.hexdigest(), self._chunks.finish())
        result = HashResult(self._whole.hexdigest(), self.size, manifest)
        with self._staging:
            return self._storage._commit(self._staging, result, expected_sha1)

    def abort(self) -> None:
        self._staging.__exit__(None, None, None)

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._staging.committed:
            self.abort()


class _StagingFile:
    """A temporary file that is removed unless committed (or kept for debugging)."""

    def __init__(self, path: Path, keep: bool) -> None:
        self.path = path
        self.keep = keep
        self.committed = False
        # Readable too: large stores hash the staging file through a mapping as it fills.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.file = os.fdopen(fd, "wb", buffering=0)

    def finish(self, fsync: bool) -> None:
        if fsync:
            os.fsync(self.file.fileno())
        self.file.close()

    def __enter__(self) -> _StagingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.file.closed:
            self.file.close()
        if not self.committed and not self.keep:
            unlink_quietly(self.path)


def check_regular_file(st: os.stat_result, shown: str) -> None:
    """Refuse anything but a regular file as the input of a store or link, in one line."""
    if stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(
            f"{shown!r} is a directory, not a file",
            "store the files in it one by one, or pack it with tar first",
        )
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{shown!r} is not a regular file", "give a regular file")


class open_input_file:
    """Open a user-named file for reading, turning OS errors into one-line messages."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> tuple[io.FileIO, os.stat_result]:
        shown = str(self.path)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise InvalidInputError(f"no such file: {shown!r}", "check the path") from None
        except PermissionError:
            raise InvalidInputError(
                f"permission denied: {shown!r}", "check its permissions"
            ) from None
        check_regular_file(st, shown)
        try:
            self.file = io.FileIO(self.path, "rb")
        except PermissionError:
            raise InvalidInputError(
                f"permission denied reading {shown!r}", "check the file's permissions"
            ) from None
        return self.file, st

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _check_unchanged(path: Path, before: os.stat_result, result: HashResult) -> None:
    after = os.stat(path)
    if (
        result.size != before.st_size
        or after.st_size != before.st_size
        or after.st_mtime != before.st_mtime
    ):
        raise IntegrityError(
            f"{str(path)!r} changed while it was being read",
            "wait until whatever writes it is done, then try again",
        )


def _read_small(source: io.FileIO, size: int) -> bytes:
    """All of a file expected to be `size` bytes, with at most one byte more (so a file that
    grew shows up as the wrong size)."""
    data = source.read(size + 1)
    if len(data) == size + 1 or not data:
        return data
    pieces = [data]  # a short read: keep going until the end or one byte too many
    got = len(data)
    while got <= size:
        piece = source.read(size + 1 - got)
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


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


def _staging_name() -> str:
    return f"{_HOST}-{os.getpid()}-{os.urandom(6).hex()}.part"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unlink_quietly(path: Path) -> None:
    """Remove a file that may already be gone (staging files, leftovers of other processes)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


_HOST = socket.gethostname().replace("-", "_") or "host"
