"""Datasets: whole folders stored, listed and loaded by one `sha1dir://` URI.

Everything here works through the `Backend` interface, so every backend (and
every plugin) gets directories without code of its own: the files are ordinary objects
and the directory object is one more. A backend that can move several files at once says
so in `parallel_transfers`; batches then run on that many threads over its one connection
pool, and loads go through its `load_files` (a batch request, where it has one).

    >>> uri = store_folder(backend, Path("recording"))                 # doctest: +SKIP
    >>> materialize(backend, parse_dir_uri(str(uri)), Path("copy"))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Callable,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from kachery_client.directories.materialize import materialize_tree
from kachery_client.directories.scan import ScannedFolder, scan_folder
from kachery_client.verified_read import VerifiedRead, open_verified
from kachery_client.verified_store import (
    link_file_checked,
    store_file_checked,
    store_files_checked,
    store_stream_checked,
)
from kachery_core.backend.batch import BatchProgress, BatchReport, run_batch
from kachery_core.content.directory import (
    MAX_DIRECTORY_OBJECT_BYTES,
    Directory,
    FileEntry,
    not_a_directory,
)
from kachery_core.content.manifest import MANIFEST_THRESHOLD
from kachery_core.content.uri import ContentUri, DirUri, check_dir_label
from kachery_core.errors import (
    FolderProblemsError,
    IntegrityError,
    InvalidInputError,
    InvalidUriError,
)
from kachery_core.protocol.wire import STORE_BATCH_MAX_OBJECT_BYTES

if TYPE_CHECKING:
    from kachery_core.backend.base import Backend
    from kachery_core.content.hashing import Progress
    from kachery_core.store.base import StoredObject


def parallel_transfers(backend: Backend) -> int:
    return max(1, backend.parallel_transfers)


# -- storing ---------------------------------------------------------------------------


def store_paths(
    backend: Backend,
    paths: Sequence[str],
    link: bool = False,
    progress: Optional[BatchReport] = None,
) -> List[StoredObject]:
    """Store (or link) several files as one batch; results in the order given.

    Small files (up to `wire.STORE_BATCH_MAX_OBJECT_BYTES`) are stored through the backend's
    `store_files` (one request for many, where it can), the others one by one.
    """
    counter = BatchProgress(progress)

    def one(path: str) -> StoredObject:
        file_progress = counter.for_file()
        stored = _store_one(backend, path, link, file_progress)
        file_progress.done(stored.size)
        return stored

    small = [] if link else [i for i, path in enumerate(paths) if _small_file(path)]
    if len(small) < 2:
        return run_batch(paths, one, parallel_transfers(backend))
    results: List[Optional[StoredObject]] = [None] * len(paths)
    batched = store_files_checked(backend, [paths[i] for i in small], counter)
    for i, stored in zip(small, batched):
        results[i] = stored
    rest = [i for i, stored in enumerate(results) if stored is None]
    for i, stored in zip(
        rest, run_batch([paths[i] for i in rest], one, parallel_transfers(backend))
    ):
        results[i] = stored
    return [stored for stored in results if stored is not None]


def _small_file(path: str) -> bool:
    """A regular file small enough for a batch store (anything else goes alone, where its
    problem, if any, is reported as for a single store)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size <= STORE_BATCH_MAX_OBJECT_BYTES


def store_folder(
    backend: Backend,
    root: Path,
    label: Optional[str] = None,
    *,
    link: bool = False,
    skip_errors: bool = False,
    on_skipped: Optional[Callable[[str], None]] = None,
    progress: Optional[BatchReport] = None,
    scanned: Optional[ScannedFolder] = None,
) -> DirUri:
    """Store every file below `root` and the directory object naming them all.

    The folder is walked first: entries that cannot be stored (broken links, FIFOs,
    devices, links to directories) raise `FolderProblemsError` before anything is stored,
    unless `skip_errors`, which leaves them out (each passed to `on_skipped`). The label
    defaults to the folder's name. `scanned` is the walk, when the caller made it already
    (to check several folders before storing any).
    """
    label = check_dir_label(label) if label else _folder_label(root)
    tree = scanned if scanned is not None else check_folder(root, skip_errors)
    for problem in tree.problems:
        if on_skipped is not None:
            on_skipped(problem)
    stored = store_paths(backend, [f.local_path for f in tree.files], link, progress)
    directory = Directory()
    for path in tree.dirs:
        directory.subdir(path)
    for file, obj in zip(tree.files, stored):
        directory.add_file(file.path, _entry(obj))
    data = directory.to_bytes()
    root_obj = store_stream_checked(backend, io.BytesIO(data))
    return DirUri(root_obj.sha1, label)


def check_folder(root: Path, skip_errors: bool) -> ScannedFolder:
    """Walk `root`; raise `FolderProblemsError` if anything cannot be stored (unless skipped)."""
    tree = scan_folder(root)
    if tree.problems and not skip_errors:
        raise FolderProblemsError(root, tree.problems)
    return tree


def upload_directory(
    backend: Backend,
    uri: DirUri,
    channel: str,
    progress: Optional[BatchReport] = None,
) -> None:
    """Have the node upload every file of a stored tree, then its directory object."""
    directory = read_directory(backend, uri.root())
    entries = list(directory.walk())
    counter = BatchProgress(progress)

    def one(item: Tuple[Tuple[str, ...], FileEntry]) -> None:
        path, entry = item
        backend.upload_to_channel(entry.uri(path[-1]), channel)
        counter.add(1, entry.size)

    run_batch(entries, one, parallel_transfers(backend))
    backend.upload_to_channel(ContentUri(uri.sha1), channel)


def _store_one(
    backend: Backend, path: str, link: bool, progress: Optional[Progress]
) -> StoredObject:
    if link:
        return link_file_checked(backend, path, progress)
    return store_file_checked(backend, path, progress)


def _entry(obj: StoredObject) -> FileEntry:
    manifest = obj.manifest_sha1 if obj.size > MANIFEST_THRESHOLD else None
    return FileEntry(obj.size, obj.sha1, manifest)


def _folder_label(root: Path) -> Optional[str]:
    """The folder's name, unless it cannot be a label (control characters, not UTF-8):
    then none."""
    name = os.path.basename(os.path.normpath(os.path.abspath(root)))
    try:
        name.encode("utf-8")
        return check_dir_label(name) or None
    except (InvalidUriError, UnicodeEncodeError):
        return None


# -- reading ---------------------------------------------------------------------------


def read_directory(backend: Backend, uri: DirUri) -> Directory:
    """The directory object `uri` names (its root), fetched through `backend` and checked.

    An error names the `sha1dir://` URI the user gave, not only the object's hash.
    """
    where = str(uri.root())
    try:
        with open_verified(backend, ContentUri(uri.sha1)) as stream:
            data = _read_capped(stream, MAX_DIRECTORY_OBJECT_BYTES)
    except IntegrityError as exc:
        raise IntegrityError(f"the directory object of {where}: {exc.message}", exc.hint) from None
    if data is None:
        raise IntegrityError(
            f"{where} is larger than {MAX_DIRECTORY_OBJECT_BYTES} bytes",
            "that is not a directory object kachery can read",
        )
    return Directory.from_bytes(data, where)


def _read_capped(stream: VerifiedRead, limit: int) -> Optional[bytes]:
    """The whole stream, read to its end (where a verified read checks the hash), or None
    as soon as it passes `limit` bytes, so a huge object is never held whole. A stream may
    return less than asked (a gRPC or HTTP chunk), so this reads until the end."""
    blocks: List[bytes] = []
    held = 0
    while True:
        block = stream.read(min(_READ_BLOCK, limit + 1 - held))
        if not block:
            return b"".join(blocks)
        blocks.append(block)
        held += len(block)
        if held > limit:
            return None


_READ_BLOCK = 1 << 20


def lookup(backend: Backend, uri: DirUri) -> Union[FileEntry, Directory]:
    """The entry a `sha1dir://` URI's path names in its directory object."""
    return read_directory(backend, uri).lookup(uri.path, str(uri.root()))


def resolve(backend: Backend, uri: DirUri) -> Union[ContentUri, Directory]:
    """What a `sha1dir://` URI names: a file's `sha1://` URI, or a directory."""
    entry = lookup(backend, uri)
    if isinstance(entry, FileEntry):
        return entry.uri(uri.path[-1])
    return entry


def resolve_file(backend: Backend, uri: Union[ContentUri, DirUri]) -> ContentUri:
    """A `sha1://` URI as it is; a path to a file in a `sha1dir://` URI, looked up."""
    if isinstance(uri, ContentUri):
        return uri
    found = resolve(backend, uri)
    if isinstance(found, ContentUri):
        return found
    raise _a_directory(uri)


def _a_directory(uri: DirUri) -> InvalidInputError:
    return InvalidInputError(
        f"{uri} is a directory, not a file",
        "load a whole directory with `load-file -r URI --dest DIR` (load_dir in Python), "
        "or list it with `kachery-client ls`",
    )


def load_entry(
    backend: Backend, uri: DirUri, progress: Optional[Progress] = None
) -> Tuple[ContentUri, str]:
    """Load the file a path in a `sha1dir://` URI names: its `sha1://` URI and local path.

    The bytes are checked against the entry's hash by the load; its size is checked here,
    since a directory object that misstates a size describes its tree untruthfully.
    """
    entry = lookup(backend, uri)
    if not isinstance(entry, FileEntry):
        raise _a_directory(uri)
    file_uri = entry.uri(uri.path[-1])
    path = backend.load_file(file_uri, progress)
    check_entry_size(str(uri.root()), uri.path, entry, os.stat(path).st_size)
    return file_uri, path


def check_entry_size(where: str, path: Tuple[str, ...], entry: FileEntry, size: int) -> None:
    """Refuse a file whose object (found by hash, so its bytes are right) is not the size
    its directory entry says: the directory object misstates the tree."""
    if size != entry.size:
        raise IntegrityError(
            f"{where}: the entry {'/'.join(path)!r} says {entry.size} bytes, but its object "
            f"sha1://{entry.sha1} has {size}",
            "the directory object misstates its files; nothing was written",
        )


def resolve_dir(backend: Backend, uri: DirUri) -> Directory:
    found = resolve(backend, uri)
    if isinstance(found, ContentUri):
        raise not_a_directory(str(uri))
    return found


# -- materializing ---------------------------------------------------------------------


def materialize(
    backend: Backend,
    uri: DirUri,
    dest: Path,
    *,
    force: bool = False,
    copy: bool = False,
    progress: Optional[BatchReport] = None,
) -> Path:
    """Write the tree `uri` names at `dest`; every file is hash-checked before it appears.

    Files are hard links to the objects where the filesystem allows (read-only: they are
    the store's bytes), copies otherwise or with `copy`. `dest` must be absent or an empty
    directory: then the tree is built beside it and renamed into place, so a failure
    leaves nothing. With `force`, an existing folder is filled file by file (each file
    replaced atomically; other files in it are left alone), once no entry of the tree
    conflicts with what is there. Nothing is ever written outside `dest`
    (`kachery_client.directories.materialize`).
    """
    directory = resolve_dir(backend, uri)
    return materialize_tree(
        backend,
        uri,
        directory,
        Path(dest),
        load_files,
        check_entry_size,
        force=force,
        copy=copy,
        progress=progress,
    )


def load_files(
    backend: Backend,
    uris: Sequence[ContentUri],
    progress: Optional[BatchReport] = None,
    sizes: Optional[Sequence[int]] = None,
) -> List[str]:
    """Make several objects available locally; their paths, in order (the backend's
    `load_files`: one request for many small files where it has one, else `load_file` on
    its `parallel_transfers` threads). `sizes` (what a directory says, when known) lets a
    batch check each object's size before reading it."""
    return list(backend.load_files(uris, progress, sizes))
