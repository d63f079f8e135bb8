"""Which files of this machine a client may have the node read by naming their path.

`/storeFile`, `/linkFile` and gRPC `Link` make the node read a path the client names. The
node often runs as another user than its clients (they reach it through `--auth-group`),
so without a rule a client could have the node copy the node's own key, token file or
databases into storage and then download them. The rule, in one place for every API:

* never the node's private files: anything in its storage directory that is not an object
  (key, client-auth, tokens, databases, state and lock files, link records, staging files),
  nor its key or config file wherever they are (also through a symlink or a hard link);
* only a file the client could read itself: world-readable; or group-readable by the
  node's auth group; or, on a node without an auth group (one user, the client is that
  user), a file the node's user owns and can read. Every directory above it must be
  searchable by the same rule.

A refusal does not tell whether the path exists: a missing path, an unreadable one and a
private one get the same one-line answer. The file is opened once and every check is made
on the open file (`fstat`), so it cannot be swapped for another between check and read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Set, Tuple

from kachery_core.errors import InvalidInputError
from kachery_core.store.local import check_regular_file

MAX_PATH_CHARS = 4096
"""Longest path a client may name (Linux's PATH_MAX)."""


class PathRefused(InvalidInputError):
    """The path is missing, unreadable by the client, or private to the node (not said which)."""


def refused(shown: str) -> PathRefused:
    return PathRefused(
        f"cannot read {shown!r}: no such file, or not one this node may read for its clients",
        "name a file the client itself can read (world-readable, or group-readable by the "
        "node's auth group); the node's own files are never read",
    )


@dataclass(frozen=True)
class ClientFile:
    """A file opened for a client: its real path, the open file, and its stat at opening."""

    path: Path
    fd: int
    stat: os.stat_result

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class PathPolicy:
    """The readability rule of one node (see the module docstring)."""

    storage_root: Path
    private_files: Tuple[Path, ...] = ()
    """Private files outside or inside the storage directory: key, config, token file..."""
    auth_group: Optional[int] = None
    uid: int = field(default_factory=os.getuid)

    def open(self, text: str, what: str = "localFilePath") -> ClientFile:
        """Open `text` for reading on a client's behalf, or `PathRefused`/`InvalidInputError`."""
        check_path_text(text, what)
        shown = text[:200]
        try:
            real = Path(os.path.realpath(text))
        except (OSError, ValueError):
            raise refused(shown) from None
        if self._is_private_path(real):
            raise refused(shown)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            raise refused(shown) from None
        try:
            st = os.fstat(fd)
            if (
                not self._may_read(st, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)
                or self._is_private_inode(st)
                or not self._ancestors_searchable(real)
            ):
                raise refused(shown)
            check_regular_file(st, shown)
        except BaseException:
            os.close(fd)
            raise
        return ClientFile(real, fd, st)

    # -- the rule ---------------------------------------------------------------------

    def _may_read(self, st: os.stat_result, owner: int, group: int, other: int) -> bool:
        mode = st.st_mode
        if mode & other:
            return True
        if self.auth_group is not None:
            return bool(mode & group) and st.st_gid == self.auth_group
        return bool(mode & owner) and st.st_uid == self.uid

    def _ancestors_searchable(self, real: Path) -> bool:
        for directory in real.parents:
            try:
                st = os.stat(directory)
            except OSError:
                return False
            if not self._may_read(st, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
                return False
        return True

    def _is_private_path(self, real: Path) -> bool:
        root = _real(self.storage_root)
        if real == root or root in real.parents:
            return not _is_object_path(real.relative_to(root).parts)
        return any(real == _real(p) for p in self.private_files)

    def _is_private_inode(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) in _inodes(self._private_candidates())

    def _private_candidates(self) -> Iterable[Path]:
        yield from self.private_files
        try:
            names = os.listdir(self.storage_root)
        except OSError:
            return
        for name in names:  # the top-level files: key, tokens, databases, state, lock...
            yield self.storage_root / name


def check_path_text(text: str, what: str) -> None:
    """Refuse what no filesystem call should be given: NUL bytes, absurd lengths, relative."""
    if "\0" in text:
        raise InvalidInputError(f"{what} must not contain a NUL character")
    if len(text) > MAX_PATH_CHARS:
        raise InvalidInputError(f"{what} is longer than {MAX_PATH_CHARS} characters")
    if not os.path.isabs(text):
        raise InvalidInputError(f"{what} must be absolute, not {text[:200]!r}")
    try:
        os.fsencode(text)
    except UnicodeError:
        raise InvalidInputError(f"{what} is not valid Unicode text") from None


def _is_object_path(parts: Tuple[str, ...]) -> bool:
    """sha1/<2>/<2>/<2>/<40 hex> and nothing else (not a link record, not a staging file)."""
    if len(parts) != 5 or parts[0] != "sha1":
        return False
    name = parts[4]
    hexdigits = set("0123456789abcdef")
    return (
        len(name) == 40
        and set(name) <= hexdigits
        and (parts[1], parts[2], parts[3]) == (name[0:2], name[2:4], name[4:6])
    )


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inodes(paths: Iterable[Path]) -> Set[Tuple[int, int]]:
    found = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.add((st.st_dev, st.st_ino))
    return found
