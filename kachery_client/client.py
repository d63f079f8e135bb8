"""`Client`: the Python API over whichever backend is active.

    >>> import kachery_client as kc
    >>> uri = kc.store_text("Hello, world!")
    >>> kc.load_text(uri)
    'Hello, world!'

For explicit configuration in scripts, make a `Client` with settings as keywords; they
win over the environment and config file, just as command-line flags do:

    >>> client = kc.Client(storage_dir="/data/kachery-storage")   # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Union

from kachery_client.arguments import (
    InvalidChannelNameError,  # noqa: F401 - re-exported: the CLI catches it
    _basename,
    _dir_uri,
    _label_of,
    _parsed,
    _shown_name,
    _size,
    check_channel_name,
)
from kachery_client.backends.registry import get_registry
from kachery_client.backends.selection import Selection, select_backend
from kachery_client.progress_bars import (
    ShowProgress,
    ShowTreeProgress,
    byte_progress,
    tree_progress,
)
from kachery_client.storage_use import StorageUse
from kachery_client.typed import TypedObjects
from kachery_core.content.uri import ContentUri, DirUri
from kachery_core.errors import InvalidInputError, UnsupportedOperation
from kachery_core.settings.config import Config, resolve_config

if TYPE_CHECKING:
    from kachery_client.directories.scan import ScannedFolder
    from kachery_core.backend.base import JSON, Backend, NodeInfo
    from kachery_core.content.directory import Directory, FileEntry
    from kachery_core.content.hashing import Progress
    from kachery_core.store.base import StoredObject
    from kachery_core.store.local import LocalStorage

UriLike = Union[str, ContentUri, DirUri]
PathLike = Union[str, "os.PathLike[str]"]


class Client(StorageUse, TypedObjects):
    """Store and load files through the active backend (chosen as `kachery-client info` says).

    Every method that loads takes `channel=`: a node lacking the object fetches it from
    that channel (default: the client's `channel` setting). Long operations take
    `progress=`: True for a bar (on a terminal or in Jupyter), or a callback.
    """

    def __init__(
        self,
        backend: Optional[str] = None,
        *,
        _source: str = "Client() argument",
        _config: Optional[Config] = None,
        **settings: Any,
    ) -> None:
        """`backend` names the backend (`transport=` is accepted as another spelling);
        other keywords are settings (`storage_dir=`, `daemon_port=`, ...), as in `Config`."""
        if backend is not None:
            settings["backend"] = backend
        if settings.get("channel") is not None:
            settings["channel"] = check_channel_name(settings["channel"])
        self.config: Config = _config or resolve_config(settings, explicit_source=_source)
        self._backend: Optional[Backend] = None
        self._selection: Optional[Selection] = None
        self._on_channels: Dict[str, Client] = {}

    def _via(self, channel: Optional[str]) -> Client:
        """This client, or (for a call's `channel=`) one like it that loads through that
        channel, made once per channel and closed with this one."""
        if channel is None or channel == self.config.channel:
            return self
        name = check_channel_name(channel)
        if name not in self._on_channels:
            self._on_channels[name] = Client(_config=self.config.replace(channel=name))
        return self._on_channels[name]

    @property
    def selection(self) -> Selection:
        """Which backend is used, and why."""
        if self._selection is None:
            self._selection = select_backend(self.config, get_registry())
        return self._selection

    @property
    def backend(self) -> Backend:
        """The active backend object, made on first use (no network I/O until then)."""
        if self._backend is None:
            cls = get_registry().load(self.selection.name)
            self._backend = cls.from_config(self.config)
        return self._backend

    transport = property(lambda self: self.backend, doc="The earlier name of `backend`.")

    def node_info(self) -> NodeInfo:
        """Who is at the other end of the active backend (may contact the node)."""
        return self.backend.node_info()

    def local_store(self) -> LocalStorage:
        """The storage directory on this machine that loads read objects from (what
        `kachery-client verify` checks); `UnsupportedOperation` when the backend has none."""
        store = self.backend.local_store()
        if store is None:
            raise UnsupportedOperation(
                self.selection.name, "verify", "it keeps no storage on this machine to check"
            )
        return store

    def close(self) -> None:
        """Close the backend's connections (a `with Client() as c:` block does it too)."""
        for other in self._on_channels.values():
            other.close()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files --------------------------------------------------------------------

    def store_file(
        self,
        path: PathLike,
        label: Optional[str] = None,
        progress: ShowProgress = None,
        upload_to_channel: Optional[str] = None,
        upload_progress: ShowProgress = None,
    ) -> str:
        """Store a copy of a file; return its `sha1://` URI (labelled with its base name).

        With `upload_to_channel`, the node also uploads it (and its manifest) to that channel.
        `progress=True` draws a bar (`upload_progress=True` one for the upload).
        """
        name = label or _basename(path)
        from kachery_client.verified_store import store_file_checked

        with byte_progress(progress, f"storing {name}", _size(path)) as report:
            return self._store_and_upload(
                lambda: store_file_checked(self.backend, os.fspath(path), report),
                name,
                upload_to_channel,
                upload_progress,
                _size(path),
            )

    def link_file(
        self, path: PathLike, label: Optional[str] = None, progress: ShowProgress = None
    ) -> str:
        """Make a file available without copying it; it is served only while unchanged."""
        name = label or _basename(path)  # refused before any work
        from kachery_client.verified_store import link_file_checked

        with byte_progress(progress, f"linking {name}", _size(path)) as report:
            stored = link_file_checked(self.backend, os.fspath(path), report)
        return str(stored.uri(name))

    def store_stream(
        self,
        stream: BinaryIO,
        label: Optional[str] = None,
        progress: ShowProgress = None,
        upload_to_channel: Optional[str] = None,
    ) -> str:
        """Store everything read from a binary stream (a pipe, a socket, a file object)."""
        from kachery_client.verified_store import store_stream_checked

        with byte_progress(progress, f"storing {label or 'stream'}", None) as report:
            return self._store_and_upload(
                lambda: store_stream_checked(self.backend, stream, report),
                label,
                upload_to_channel,
            )

    def _store_and_upload(
        self,
        store: Callable[[], StoredObject],
        label: Optional[str],
        channel: Optional[str],
        upload_progress: ShowProgress = None,
        size: Optional[int] = None,
    ) -> str:
        """Store, then have the node upload to `channel` (checked first, before any work)."""
        if channel is not None:
            self.check_upload(channel)
        uri = store().uri(label)
        if channel is not None:
            with byte_progress(upload_progress, f"uploading to {channel}", size) as report:
                self.backend.upload_to_channel(uri, channel, report)
        return str(uri)

    def check_upload(self, channel: str) -> None:
        """Raise now if `channel` is not a channel name, or this backend cannot upload to
        channels: before a store does any work, so a bad name never leaves a stored file."""
        check_channel_name(channel)
        self.backend.check_channels(channel)

    def upload_to_channel(
        self, uri: UriLike, channel: Optional[str] = None, progress: ShowProgress = None
    ) -> None:
        """Have the node upload a file it holds to a channel (default: the `channel` setting).

        Other nodes of the channel can then load it; a client names the channel with
        `Client(channel=...)`, `--channel` or `KACHERY_CHANNEL`.
        """
        name = channel or self.config.channel
        if name is None:
            raise InvalidInputError(
                "no channel to upload to", "name one, or set channel (KACHERY_CHANNEL)"
            )
        checked = check_channel_name(name)
        parsed = _parsed(uri)
        if isinstance(parsed, DirUri):
            from kachery_client.directories.operations import upload_directory

            upload_directory(self.backend, parsed, checked)
            return
        with byte_progress(progress, f"uploading to {checked}", None) as report:
            self.backend.upload_to_channel(parsed, checked, report)

    def load_file(
        self,
        uri: UriLike,
        dest: Optional[PathLike] = None,
        progress: ShowProgress = None,
        *,
        channel: Optional[str] = None,
    ) -> str:
        """Return a local path holding the object's bytes; with `dest`, a verified copy there.

        `dest` may be a directory, in which case the file is named after the URI's label
        (or its hash). Raises `NotFoundError` naming the URI and where it looked.
        """
        if channel is not None:
            return self._via(channel).load_file(uri, dest, progress)
        with byte_progress(progress, f"loading {_label_of(uri)}", None) as report:
            return self._load_file(uri, dest, report)

    def _load_file(
        self, uri: UriLike, dest: Optional[PathLike], progress: Optional[Progress]
    ) -> str:
        given = _parsed(uri)
        if isinstance(given, DirUri):
            from kachery_client.directories.operations import load_entry

            parsed, path = load_entry(self.backend, given, progress)
        else:
            parsed = given
            path = self.backend.load_file(parsed, progress)
        if dest is None:
            return path
        from kachery_client.dest_copy import copy_verified  # only --dest copies

        return str(copy_verified(Path(path), dest, parsed, progress))

    def _file_uri(self, uri: UriLike) -> ContentUri:
        """A `sha1://` URI as it is; a file inside a `sha1dir://` URI, looked up."""
        parsed = _parsed(uri)
        if isinstance(parsed, ContentUri):
            return parsed
        from kachery_client.directories.operations import resolve_file

        return resolve_file(self.backend, parsed)

    def open(
        self, uri: UriLike, start: Optional[int] = None, end: Optional[int] = None
    ) -> BinaryIO:
        """A seekable, read-only binary file over the object (`sha1://`, or a file in a
        `sha1dir://` tree), read lazily: only the chunks a read touches are fetched, and
        each is hash-checked before any of its bytes is returned (kachery_client/lazy).

        Given `start` or `end` (as `cat-file` gives them), a one-pass stream of bytes
        [start, end) instead: a whole object hashed as it streams (`IntegrityError` at its
        end), a range cut from pieces checked before any of it is given.
        """
        if start is not None or end is not None:
            from kachery_client.verified_read import open_verified

            stream = open_verified(self.backend, self._file_uri(uri), start or 0, end)
            return stream  # type: ignore[return-value]
        from kachery_client.lazy.file import open_uri

        return open_uri(self.backend, _parsed(uri), self.config)

    def load_bytes(
        self,
        uri: UriLike,
        start: int = 0,
        end: Optional[int] = None,
        *,
        channel: Optional[str] = None,
    ) -> bytes:
        """The object's bytes [start, end) (all of them by default), checked against its
        hash before any is returned."""
        with self._via(channel).open(uri, start, end) as stream:
            return stream.read()

    # -- directories and batches -------------------------------------------------------

    def store_dir(
        self,
        path: PathLike,
        label: Optional[str] = None,
        *,
        link: bool = False,
        skip_errors: bool = False,
        upload_to_channel: Optional[str] = None,
        progress: ShowTreeProgress = None,
        scanned: Optional[ScannedFolder] = None,
    ) -> str:
        """Store every file below a folder and return the `sha1dir://` URI naming the tree.

        The label defaults to the folder's name. Symlinks to files are stored as their
        content; broken links, links to directories and special files raise
        `FolderProblemsError` (listing each in `.problems`) before anything is stored,
        unless `skip_errors`. `link=True` links the files instead of copying them.
        `progress` is True for a bar, or called with (files done, bytes done). `scanned` is
        the folder's walk from `check_dir`, when it was made first (to check several
        folders before any store).
        """
        from kachery_client.directories.operations import store_folder, upload_directory

        if upload_to_channel is not None:
            self.check_upload(upload_to_channel)
        if progress is True and scanned is None:  # the walk gives the bar its totals
            scanned = self.check_dir(path, skip_errors)
        files, size = (len(scanned.files), scanned.total_size) if scanned else (None, None)
        with tree_progress(progress, f"storing {_shown_name(path)}", files, size) as report:
            uri = store_folder(
                self.backend,
                Path(os.fspath(path)),
                label,
                link=link,
                skip_errors=skip_errors,
                progress=report,
                scanned=scanned,
            )
        if upload_to_channel is not None:
            upload_directory(self.backend, uri, upload_to_channel)
        return str(uri)

    def check_dir(self, path: PathLike, skip_errors: bool = False) -> ScannedFolder:
        """Walk a folder as `store_dir` would, storing nothing: what it would store, or
        `FolderProblemsError` listing what cannot be stored (unless `skip_errors`)."""
        from kachery_client.directories.operations import check_folder

        return check_folder(Path(os.fspath(path)), skip_errors)

    def store_files(
        self,
        paths: Sequence[PathLike],
        *,
        link: bool = False,
        progress: ShowTreeProgress = None,
    ) -> List[str]:
        """Store (or link) several files as one batch; their URIs, in the order given.

        Backends that reach a node over the network move several files at once.
        """
        from kachery_client.directories.operations import store_paths

        texts = [os.fspath(p) for p in paths]
        names = [_basename(p) for p in texts]  # every name checked before any store
        total = sum(_size(p) or 0 for p in texts)
        with tree_progress(progress, "storing", len(texts), total) as report:
            stored = store_paths(self.backend, texts, link, report)
        return [str(obj.uri(name)) for obj, name in zip(stored, names)]

    def read_dir(self, uri: UriLike, *, channel: Optional[str] = None) -> Dict[str, Any]:
        """The directory a `sha1dir://` URI names, as `{"files": {...}, "dirs": {...}}`.

        Each file entry has `size`, `sha1` and, for files over 20,000,000 bytes,
        `manifestSha1`; sub-directories nest in `dirs`.
        """
        from kachery_client.directories.operations import resolve_dir

        return resolve_dir(self._via(channel).transport, _dir_uri(uri)).to_json()

    def lookup(self, uri: UriLike) -> Union[FileEntry, Directory]:
        """The entry the path of a `sha1dir://` URI names: a file's, or a directory."""
        from kachery_client.directories.operations import lookup

        return lookup(self.backend, _dir_uri(uri))

    def load_dir(
        self,
        uri: UriLike,
        dest: PathLike,
        *,
        force: bool = False,
        copy: bool = False,
        progress: ShowTreeProgress = None,
        channel: Optional[str] = None,
    ) -> str:
        """Write the tree a `sha1dir://` URI names at `dest`; return `dest`.

        Every file is hash-checked before it appears. Files are hard links to the store
        (read-only) where the filesystem allows, copies otherwise or with `copy=True`.
        `dest` must be new or an empty directory unless `force=True`.
        """
        from kachery_client.directories.operations import materialize, resolve_dir

        transport, parsed = self._via(channel).transport, _dir_uri(uri)
        files, size = resolve_dir(transport, parsed).totals() if progress is True else (None, None)
        with tree_progress(progress, f"loading {parsed.label or 'folder'}", files, size) as report:
            done = materialize(
                transport, parsed, Path(os.fspath(dest)), force=force, copy=copy, progress=report
            )
        return str(done)

    def store_bytes(self, data: bytes, label: Optional[str] = None) -> str:
        """Store bytes held in memory; return their `sha1://` URI (named `label`)."""
        return self.store_stream(io.BytesIO(data), label)

    # store_text ... load_pkl come from TypedObjects (kachery_client/typed.py)

    # -- mutables -----------------------------------------------------------------

    def get(self, key: JSON, default: JSON = None) -> JSON:
        """The value stored under a mutable key, or `default` if there is none."""
        found, value = self.backend.mutable_get(key)
        return value if found else default

    def set(self, key: JSON, value: JSON, update: bool = True) -> None:
        """Store `value` under a mutable key; with `update=False` an existing value is kept."""
        self.backend.mutable_set(key, value, update)

    def delete(self, key: JSON) -> None:
        """Remove a mutable key."""
        self.backend.mutable_delete(key)
