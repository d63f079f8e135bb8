"""Copies of objects at paths the user names (`--dest`), written so nothing is written through.

A copy is written to a new staging file beside the target, hashed on the way, and renamed
over the target only when its hash is the object's. Only a missing path, a regular file or
a symlink to a regular file is replaced (the symlink itself; its target is left alone).
`load-file --dest` and the materialization of a directory (`load-file -r`) both use it.

Every write is made relative to an open descriptor of the folder it goes in (`dir_fd=`,
`O_NOFOLLOW`), so a folder or link swapped in while the bytes arrive cannot redirect it
outside that folder. Staging names are cut to fit the filesystem's name limit, so every
name the filesystem can hold can be loaded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Any, Optional, Union

from kachery_client.file_kinds import file_kind
from kachery_core.content.hashing import (
    COPY_STEP,
    HashResult,
    Progress,
    hash_file_copy,
    hash_stream,
    writer_for,
)
from kachery_core.content.uri import ContentUri
from kachery_core.errors import IntegrityError, InvalidInputError

PathLike = Union[str, "os.PathLike[str]"]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DEFAULT_NAME_MAX = 255


def copy_verified(
    source: Path, dest: PathLike, uri: ContentUri, progress: Optional[Progress]
) -> Path:
    """Copy an object to `dest` atomically, checking its hash on the way.

    The copy is written to a new staging file beside the target and renamed over it, so
    nothing is ever written through: only a missing path, a regular file or a symlink to
    a regular file (the symlink itself is replaced; its target is not touched) is
    replaced. See `final_destination` for what is refused.
    """
    final = final_destination(dest, uri)
    folder = open_folder(final.parent)
    try:
        write_copy_at(source, folder, final.name, str(final), uri, progress, same_as=final)
    finally:
        os.close(folder)
    return final


def open_folder(path: Path) -> int:
    """A descriptor of the folder the user named (symlinks in the path followed: it is theirs)."""
    try:
        return os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidInputError(
            f"destination directory {str(path)!r} does not exist", "create it first"
        ) from None


def open_dir_at(dir_fd: int, name: str, shown: str) -> int:
    """A descriptor of the folder `name` in `dir_fd`, refused if it is not a real folder
    (a symlink, or a file, put there since it was checked)."""
    try:
        return os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise
        raise InvalidInputError(
            f"{shown!r} is no longer a directory: it was changed during the load",
            "nothing was written outside the destination; check it and load again",
        ) from None


def staging_name(name: str, dir_fd: Optional[int] = None) -> str:
    """A new hidden name for a staging file or folder beside `name`: `.NAME.kachery-*.part`,
    with NAME cut short so the whole fits the filesystem's limit on one name."""
    suffix = f".kachery-{os.getpid()}-{os.urandom(4).hex()}.part"
    limit = _name_max(dir_fd)
    room = max(0, limit - 1 - len(suffix))
    prefix = os.fsencode(name)[:room].decode("utf-8", "ignore")  # no cut character
    return f".{prefix}{suffix}"


def _name_max(dir_fd: Optional[int]) -> int:
    if dir_fd is None or not hasattr(os, "fpathconf"):
        return _DEFAULT_NAME_MAX
    try:
        value = os.fpathconf(dir_fd, "PC_NAME_MAX")
    except (OSError, ValueError):
        return _DEFAULT_NAME_MAX
    return value if 0 < value < 4096 else _DEFAULT_NAME_MAX


def write_copy_at(
    source: Path,
    dir_fd: int,
    name: str,
    shown: str,
    uri: ContentUri,
    progress: Optional[Progress] = None,
    same_as: Optional[Path] = None,
) -> None:
    """Copy `source` to `name` in the folder `dir_fd`, checked against `uri` before it
    appears. `shown` names the target in errors; `same_as` is its full path, when the
    target may be the (linked) source itself."""
    if same_as is not None and _same_file(source, dir_fd, name, same_as):
        # A linked file loaded onto itself: check it, but do not replace it (that would
        # give it a new inode, and so make its link stale). Another name of the same
        # inode (a hard link to an object, made by an earlier load) is replaced by a copy.
        with open(source, "rb", buffering=0) as src:
            result = hash_stream(src.readinto, None, _size(src), progress=progress, manifest=False)
        _check_hash(source, result.sha1, uri)
        return
    staging = staging_name(name, dir_fd)
    # Private (0600) while it fills: a large copy's bytes are hashed through a mapping of
    # it, and a file someone else could shrink under a mapping would kill this process.
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
    fd = os.open(staging, flags, 0o600, dir_fd=dir_fd)
    try:
        with open(source, "rb", buffering=0) as src, os.fdopen(fd, "r+b", buffering=0) as out:
            result = _copy_hashed(src, out, progress)
            os.fchmod(out.fileno(), 0o666 & ~_umask())  # what a plain new file gets
        _check_hash(source, result.sha1, uri)
        check_replaceable(name, shown, dir_fd)  # again: it may have changed meanwhile
        os.replace(staging, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging, dir_fd=dir_fd)


def link_at(source: Path, dir_fd: int, name: str, shown: str, uri: ContentUri) -> bool:
    """Hard-link the object file `source` at `name` in `dir_fd` once its bytes are checked.

    Returns False (and writes nothing) where the filesystem cannot link it, so the caller
    copies instead. Objects never change once in place (they are renamed in whole, and
    read-only), so the checked bytes are the linked bytes. The link shares the object's
    inode and so its read-only mode.
    """
    with open(source, "rb", buffering=0) as src:
        result = hash_stream(src.readinto, None, _size(src), manifest=False)
    _check_hash(source, result.sha1, uri)
    staging = staging_name(name, dir_fd)
    try:
        os.link(source, staging, dst_dir_fd=dir_fd)
    except OSError:
        return False  # another filesystem, or one without hard links
    try:
        check_replaceable(name, shown, dir_fd)
        os.replace(staging, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging, dir_fd=dir_fd)
    return True


def _copy_hashed(src: Any, out: Any, progress: Optional[Progress]) -> HashResult:
    """Copy `src` into the empty `out`, hashing the bytes that land in `out`: in the kernel
    (`copy_file_range`) with the hash following on another thread where it can, else
    read, hash and write on threads."""
    size = _size(src)
    if size >= COPY_STEP:  # smaller copies cost less than the threads and mappings
        copied = hash_file_copy(src.fileno(), out.fileno(), size, progress, manifest=False)
        if copied is not None:
            return copied
    return hash_stream(src.readinto, writer_for(out), size, progress=progress, manifest=False)


def _umask() -> int:
    """This process's umask, read without changing it where Linux shows it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _size(file: Any) -> int:
    """The size of an open file: buffers for hashing a small file are sized to it."""
    return os.fstat(file.fileno()).st_size


def _check_hash(source: Path, sha1: str, uri: ContentUri) -> None:
    if sha1 != uri.sha1:
        raise IntegrityError(
            f"{source} does not hash to {uri.sha1}",
            "the stored object is damaged; store it again (or run `kachery-client verify`)",
        )


def final_destination(dest: PathLike, uri: ContentUri) -> Path:
    """The file path `--dest` names, refused unless a copy can safely be renamed onto it.

    Like `cp`: an existing directory (or a symlink to one) means "inside it", named after
    the URI's label (or its hash); a trailing slash means "a directory", which must
    exist. The final path must be absent, a regular file, or a symlink to a regular file.
    """
    text = os.fspath(dest)
    path = Path(text)
    if path.is_dir():
        path = path / (uri.label.rsplit("/", 1)[-1] if uri.label else uri.sha1)
    elif text.endswith(("/", os.sep)):
        raise InvalidInputError(
            f"destination {text!r} is not a directory", "create the directory first"
        )
    if not path.parent.is_dir():
        raise InvalidInputError(
            f"destination directory {str(path.parent)!r} does not exist", "create it first"
        )
    check_replaceable(str(path), str(path))
    return path


def check_replaceable(
    name: str, shown: str, dir_fd: Optional[int] = None, hint: Optional[str] = None
) -> None:
    """Refuse anything at `name` (in `dir_fd`) but a regular file or a symlink to one."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    kind = file_kind(st.st_mode)
    if kind == "symbolic link":
        try:
            target = os.stat(name, dir_fd=dir_fd)
        except OSError:
            raise InvalidInputError(
                f"destination {shown!r} is a symbolic link to nothing",
                hint or "remove it, or give another --dest",
            ) from None
        if stat.S_ISREG(target.st_mode):
            return  # the link is replaced by the copy; the file it points to is left alone
        raise InvalidInputError(
            f"destination {shown!r} is a symbolic link to a {file_kind(target.st_mode)}, "
            "not a regular file",
            hint or "give a file path",
        )
    if kind != "regular file":
        raise InvalidInputError(
            f"destination {shown!r} is a {kind}, not a regular file",
            hint or "give a file path (only regular files are replaced)",
        )


def _same_file(source: Path, dir_fd: int, name: str, full: Path) -> bool:
    """`name` in `dir_fd` is `source` reached by the same path (symlinks resolved), not
    only the same inode. Only read here: nothing is written when it is."""
    try:
        here = os.stat(name, dir_fd=dir_fd)
        there = os.stat(source)
    except OSError:
        return False
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
        return False
    return os.path.realpath(source) == os.path.realpath(full)


def remove_tree_at(dir_fd: int, name: str) -> None:
    """Remove `name` in `dir_fd` and everything below it, following no symlink (a staging
    folder being cleaned up: a link swapped into it is removed, not followed)."""
    with contextlib.suppress(OSError):
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            return
        fd = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)
        try:
            with os.scandir(fd) as entries:
                names = [entry.name for entry in entries]
            for child in names:
                remove_tree_at(fd, child)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
