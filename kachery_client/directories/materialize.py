"""Writing a stored tree into a folder (`load-file -r`, `load_dir`), and only into it.

Every folder and file is made relative to an open descriptor of its parent, each folder
opened with `O_NOFOLLOW`, so a folder swapped for a symlink while the files download is
refused, never written through: nothing outside the destination is touched, whatever
changes during the load. Every conflict (a file where the tree has a folder, a folder, a
symlink to one or a special file where it has a file) is found before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Optional, Sequence, Tuple

from kachery_client.dest_copy import (
    check_replaceable,
    link_at,
    open_dir_at,
    open_folder,
    remove_tree_at,
    staging_name,
    write_copy_at,
)
from kachery_core.content.directory import Directory
from kachery_core.errors import InvalidInputError

if TYPE_CHECKING:
    from kachery_core.backend.base import Backend
    from kachery_core.backend.batch import BatchReport
    from kachery_core.content.uri import ContentUri, DirUri

Loader = Callable[..., Sequence[str]]
"""`load_files(backend, uris, progress, sizes)`: the objects' local paths, in order."""

_CONFLICT_HINT = "remove it, or give another destination"


def materialize_tree(
    backend: Backend,
    uri: DirUri,
    directory: Directory,
    dest: Path,
    load: Loader,
    check_size: Callable[..., None],
    *,
    force: bool = False,
    copy: bool = False,
    progress: Optional[BatchReport] = None,
) -> Path:
    """Write `directory` (what `uri` names) at `dest`: see `operations.materialize`."""
    full = Path(os.path.abspath(dest))
    if not full.name:
        raise InvalidInputError(
            f"destination {str(dest)!r} is the root folder", "give a new or empty directory"
        )
    try:
        parent = open_folder(full.parent)
    except InvalidInputError:
        raise InvalidInputError(
            f"destination directory {str(dest.parent)!r} does not exist", "create it first"
        ) from None
    filler = _Filler(backend, str(uri), directory, load, check_size, copy, progress)
    try:
        root = _open_dest(parent, full.name, dest, force)
        if root is not None:
            try:
                _check_conflicts(directory, root, dest)
                filler.fill(root, dest, same_check=True)
            finally:
                os.close(root)
            return dest
        _build_beside(parent, full.name, dest, filler)
    finally:
        os.close(parent)
    return dest


def _open_dest(parent: int, name: str, dest: Path, force: bool) -> Optional[int]:
    """A descriptor of `dest` when it is a non-empty folder to fill (`force`); None when
    it is absent or empty (the tree is then built beside it); refuse what cannot be used."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(
            f"destination {str(dest)!r} exists and is not a directory",
            "give a new or empty directory",
        )
    root = open_dir_at(parent, name, str(dest))
    with os.scandir(root) as entries:
        empty = next(entries, None) is None
    if empty:
        os.close(root)
        return None
    if not force:
        os.close(root)
        raise InvalidInputError(
            f"destination {str(dest)!r} is not empty",
            "give a new or empty directory, or pass --force (force=True) to write into it",
        )
    return root


def _build_beside(parent: int, name: str, dest: Path, filler: _Filler) -> None:
    """Build the tree in a new staging folder beside `dest` and rename it into place, so
    a failure leaves nothing at `dest`."""
    staging = staging_name(name, parent)
    os.mkdir(staging, 0o777, dir_fd=parent)
    try:
        root = open_dir_at(parent, staging, str(dest))
        try:
            filler.fill(root, dest, same_check=False)
        finally:
            os.close(root)
        # onto an empty directory, or where there was none; never onto anything else
        os.replace(staging, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        remove_tree_at(parent, staging)
        raise


def _check_conflicts(directory: Directory, dir_fd: int, shown: Path) -> None:
    """Refuse before writing when the folder has a file (or a symlink, even to a folder)
    where the tree has a directory, or anything but a regular file or a symlink to one
    where it has a file. The whole tree is checked, so a refusal writes nothing."""
    for name in sorted(directory.files):
        target = shown / name
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            raise InvalidInputError(
                f"{str(target)!r} is a directory, but the tree has a file there", _CONFLICT_HINT
            )
        check_replaceable(name, str(target), dir_fd, _CONFLICT_HINT)
    for name in sorted(directory.dirs):
        target = shown / name
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # made by the load: nothing in it to conflict with
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidInputError(
                f"{str(target)!r} exists and is not a directory, but the tree has one there",
                _CONFLICT_HINT,
            )
        sub = open_dir_at(dir_fd, name, str(target))
        try:
            _check_conflicts(directory.dirs[name], sub, target)
        finally:
            os.close(sub)


class _Filler:
    """Loads a tree's objects, checks them all, then writes them under an open folder."""

    def __init__(
        self,
        backend: Backend,
        where: str,
        directory: Directory,
        load: Loader,
        check_size: Callable[..., None],
        copy: bool,
        progress: Optional[BatchReport],
    ) -> None:
        self.transport = backend
        self.where = where
        self.directory = directory
        self.load = load
        self.check_size = check_size
        self.copy = copy
        self.progress = progress

    def fill(self, root: int, shown: Path, same_check: bool) -> None:
        items = list(self.directory.walk())
        uris = [entry.uri(path[-1]) for path, entry in items]  # refuses entries without a hash
        sizes = [entry.size for _path, entry in items]
        sources = self.load(self.transport, uris, self.progress, sizes)
        stats = [os.stat(source) for source in sources]
        for (path, entry), st in zip(items, stats):  # all checked before any is written
            self.check_size(self.where, path, entry, st.st_size)
        folders = _Folders(root, shown)
        try:
            for path in self.directory.walk_dirs():  # only then: a refused tree changes nothing
                folders.make(path)
            for (path, _entry), uri, source, st in zip(items, uris, sources, stats):
                self._write(folders, path, uri, Path(source), st, same_check)
        finally:
            folders.close()

    def _write(
        self,
        folders: _Folders,
        path: Tuple[str, ...],
        uri: ContentUri,
        source: Path,
        st: os.stat_result,
        same_check: bool,
    ) -> None:
        dir_fd = folders.open(path[:-1])
        shown = str(folders.shown.joinpath(*path))
        if (
            self.copy
            or not _is_object_file(source, st, uri)
            or not link_at(source, dir_fd, path[-1], shown, uri)
        ):
            same_as = folders.shown.joinpath(*path) if same_check else None
            write_copy_at(source, dir_fd, path[-1], shown, uri, same_as=same_as)


class _Folders:
    """Descriptors of the tree's folders below `root`, each reached from its parent with
    `O_NOFOLLOW`; the last one opened is kept (files come folder by folder)."""

    def __init__(self, root: int, shown: Path) -> None:
        self.root = root
        self.shown = shown
        self._open: Dict[Tuple[str, ...], int] = {}

    def make(self, path: Tuple[str, ...]) -> None:
        parent = self.open(path[:-1])
        with contextlib.suppress(FileExistsError):
            os.mkdir(path[-1], 0o777, dir_fd=parent)
        self.open(path)  # refuses anything but a real folder there

    def open(self, path: Tuple[str, ...]) -> int:
        if not path:
            return self.root
        if path in self._open:
            return self._open[path]
        self.close()
        fd = self.root
        try:
            for i, name in enumerate(path):
                child = open_dir_at(fd, name, str(self.shown.joinpath(*path[: i + 1])))
                if fd != self.root:
                    os.close(fd)
                fd = child
        except BaseException:
            if fd != self.root:
                os.close(fd)
            raise
        self._open[path] = fd
        return fd

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()


def _is_object_file(path: Path, st: os.stat_result, uri: ContentUri) -> bool:
    """An object in a storage directory (named by its hash, read-only), not a linked
    original: hard-linking a user's own file would tie the copy to later edits of it."""
    return path.name == uri.sha1 and not st.st_mode & 0o222
