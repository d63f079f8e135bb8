"""Copies of objects at paths the user names (`--dest`), written so nothing is written through.

A copy is written to a new staging file beside the target, hashed on the way, and renamed
over the target only when its hash is the object's. Only a missing path, a regular file or
a symlink to a regular file is replaced (the symlink itself; its target is left alone).
`load-file --dest` and the materialization of a directory (`load-file -r`) both use it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any, Optional, Union

from kachery_client.file_kinds import file_kind
from kachery_core.content.hashing import Progress, hash_stream, writer_for
from kachery_core.content.uri import ContentUri
from kachery_core.errors import IntegrityError, InvalidInputError

PathLike = Union[str, "os.PathLike[str]"]


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
    return write_verified_copy(source, final, uri, progress)


def write_verified_copy(
    source: Path, final: Path, uri: ContentUri, progress: Optional[Progress] = None
) -> Path:
    """Copy `source` to the file path `final`, checked against `uri` before it appears."""
    if _same_path(source, final):
        # A linked file loaded onto itself: check it, but do not replace it (that would
        # give it a new inode, and so make its link stale). Another name of the same
        # inode (a hard link to an object, made by an earlier load) is replaced by a copy.
        with open(source, "rb", buffering=0) as src:
            result = hash_stream(src.readinto, None, _size(src), progress=progress, manifest=False)
        _check_hash(source, result.sha1, uri)
        return final
    staging = _staging_beside(final)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o666)
    try:
        with open(source, "rb", buffering=0) as src, os.fdopen(fd, "wb", buffering=0) as out:
            result = hash_stream(
                src.readinto, writer_for(out), _size(src), progress=progress, manifest=False
            )
        _check_hash(source, result.sha1, uri)
        _check_replaceable(final)  # again: it may have changed while the bytes were copied
        os.replace(staging, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    return final


def link_verified(source: Path, final: Path, uri: ContentUri) -> bool:
    """Hard-link the object file `source` at `final` once its bytes are checked.

    Returns False (and writes nothing) where the filesystem cannot link it, so the caller
    copies instead. Objects never change once in place (they are renamed in whole, and
    read-only), so the checked bytes are the linked bytes. The link shares the object's
    inode and so its read-only mode.
    """
    with open(source, "rb", buffering=0) as src:
        result = hash_stream(src.readinto, None, _size(src), manifest=False)
    _check_hash(source, result.sha1, uri)
    staging = _staging_beside(final)
    try:
        os.link(source, staging)
    except OSError:
        return False  # another filesystem, or one without hard links
    try:
        os.replace(staging, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    return True


def _staging_beside(final: Path) -> Path:
    return final.with_name(f".{final.name}.kachery-{os.getpid()}-{os.urandom(4).hex()}.part")


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


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
    _check_replaceable(path)
    return path


def _check_replaceable(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    kind = file_kind(st.st_mode)
    if kind == "symbolic link":
        try:
            target = os.stat(path)
        except OSError:
            raise InvalidInputError(
                f"destination {str(path)!r} is a symbolic link to nothing",
                "remove it, or give another --dest",
            ) from None
        if stat.S_ISREG(target.st_mode):
            return  # the link is replaced by the copy; the file it points to is left alone
        raise InvalidInputError(
            f"destination {str(path)!r} is a symbolic link to a {file_kind(target.st_mode)}, "
            "not a regular file",
            "give a file path",
        )
    if kind != "regular file":
        raise InvalidInputError(
            f"destination {str(path)!r} is a {kind}, not a regular file",
            "give a file path (only regular files are replaced)",
        )


def _same_path(a: Path, b: Path) -> bool:
    """The same file reached by the same path (symlinks resolved), not only the same inode."""
    try:
        return os.path.samefile(a, b) and os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False
