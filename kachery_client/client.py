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

import contextlib
import io
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Optional, Union

from kachery_core.config import SETTINGS, Config, resolve_config
from kachery_core.errors import IntegrityError, InvalidInputError
from kachery_core.hashing import Progress, hash_stream, writer_for
from kachery_core.plugins import get_registry
from kachery_core.selection import Selection, select_backend
from kachery_core.storage import StoredObject
from kachery_core.transport import JSON, DaemonTransport
from kachery_core.uri import ContentUri, parse_uri
from kachery_core.verified_read import open_verified
from kachery_core.verified_store import (
    link_file_checked,
    store_file_checked,
    store_stream_checked,
)

if TYPE_CHECKING:
    import numpy

UriLike = Union[str, ContentUri]
PathLike = Union[str, "os.PathLike[str]"]


class Client:
    """Store and load files through the active backend (chosen as `kachery-client info` says)."""

    def __init__(
        self,
        backend: Optional[str] = None,
        *,
        _source: str = "Client() argument",
        **settings: Any,
    ) -> None:
        """`backend` names the backend (`transport=` is accepted as another spelling);
        other keywords are settings (`storage_dir=`, `daemon_port=`, ...), as in `Config`."""
        if backend is not None:
            settings["backend"] = backend
        if settings.get("channel") is not None:
            settings["channel"] = check_channel_name(settings["channel"])
        self.config: Config = resolve_config(settings, explicit_source=_source)
        self._transport: Optional[DaemonTransport] = None
        self._selection: Optional[Selection] = None

    @property
    def selection(self) -> Selection:
        """Which backend is used, and why."""
        if self._selection is None:
            self._selection = select_backend(self.config, get_registry())
        return self._selection

    @property
    def transport(self) -> DaemonTransport:
        if self._transport is None:
            cls = get_registry().load(self.selection.name)
            self._transport = cls.from_config(self.config)
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files --------------------------------------------------------------------

    def store_file(
        self,
        path: PathLike,
        label: Optional[str] = None,
        progress: Optional[Progress] = None,
        upload_to_channel: Optional[str] = None,
        upload_progress: Optional[Progress] = None,
    ) -> str:
        """Store a copy of a file; return its `sha1://` URI (labelled with its base name).

        With `upload_to_channel`, the node also uploads it (and its manifest) to that channel.
        """
        return self._store_and_upload(
            lambda: store_file_checked(self.transport, os.fspath(path), progress),
            label or _basename(path),
            upload_to_channel,
            upload_progress,
        )

    def link_file(
        self, path: PathLike, label: Optional[str] = None, progress: Optional[Progress] = None
    ) -> str:
        """Make a file available without copying it; it is served only while unchanged."""
        stored = link_file_checked(self.transport, os.fspath(path), progress)
        return str(stored.uri(label or _basename(path)))

    def store_stream(
        self,
        stream: BinaryIO,
        label: Optional[str] = None,
        progress: Optional[Progress] = None,
        upload_to_channel: Optional[str] = None,
    ) -> str:
        """Store everything read from a binary stream (a pipe, a socket, a file object)."""
        return self._store_and_upload(
            lambda: store_stream_checked(self.transport, stream, progress),
            label,
            upload_to_channel,
        )

    def _store_and_upload(
        self,
        store: Callable[[], StoredObject],
        label: Optional[str],
        channel: Optional[str],
        upload_progress: Optional[Progress] = None,
    ) -> str:
        """Store, then have the node upload to `channel` (checked first, before any work)."""
        if channel is not None:
            self.check_upload(channel)
        uri = store().uri(label)
        if channel is not None:
            self.transport.upload_to_channel(uri, channel, upload_progress)
        return str(uri)

    def check_upload(self, channel: str) -> None:
        """Raise now if `channel` is not a channel name, or this backend cannot upload to
        channels: before a store does any work, so a bad name never leaves a stored file."""
        check_channel_name(channel)
        self.transport.check_channels(channel)

    def upload_to_channel(
        self, uri: UriLike, channel: Optional[str] = None, progress: Optional[Progress] = None
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
        self.transport.upload_to_channel(_parsed(uri), checked, progress)

    def load_file(
        self, uri: UriLike, dest: Optional[PathLike] = None, progress: Optional[Progress] = None
    ) -> str:
        """Return a local path holding the object's bytes; with `dest`, a verified copy there.

        `dest` may be a directory, in which case the file is named after the URI's label
        (or its hash). Raises `NotFoundError` naming the URI and where it looked.
        """
        parsed = _parsed(uri)
        path = self.transport.load_file(parsed, progress)
        if dest is None:
            return path
        return str(_copy_verified(Path(path), dest, parsed, progress))

    def open(self, uri: UriLike, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        """A binary stream of the object's bytes [start, end), checked against its hash.

        A whole object is hashed as it streams: `IntegrityError` comes at the end of the
        stream when the bytes are not the object's (so use them only once it has ended). A
        range is cut from pieces checked before any of it is given.
        """
        return open_verified(self.transport, _parsed(uri), start, end)  # type: ignore[return-value]

    def load_bytes(self, uri: UriLike, start: int = 0, end: Optional[int] = None) -> bytes:
        with self.open(uri, start, end) as stream:
            return stream.read()

    def store_bytes(self, data: bytes, label: Optional[str] = None) -> str:
        return self.store_stream(io.BytesIO(data), label)

    # -- typed helpers ------------------------------------------------------------

    def store_text(self, text: str, label: str = "file.txt") -> str:
        return self.store_bytes(text.encode("utf-8"), label)

    def load_text(self, uri: UriLike) -> str:
        return self.load_bytes(uri).decode("utf-8")

    def store_json(self, value: JSON, label: str = "file.json") -> str:
        return self.store_bytes(json.dumps(value, separators=(",", ":")).encode("utf-8"), label)

    def load_json(self, uri: UriLike) -> JSON:
        return json.loads(self.load_bytes(uri))

    def store_npy(self, array: numpy.ndarray, label: str = "file.npy") -> str:
        """Store a numpy array in .npy format, without pickle (object arrays are refused)."""
        import numpy as np

        buffer = io.BytesIO()
        try:
            np.save(buffer, np.asarray(array), allow_pickle=False)
        except ValueError as exc:
            raise InvalidInputError(
                f"cannot store this array as .npy: {exc}", "use store_pkl"
            ) from None
        return self.store_bytes(buffer.getvalue(), label)

    def load_npy(self, uri: UriLike) -> numpy.ndarray:
        import numpy as np

        return np.load(io.BytesIO(self.load_bytes(uri)), allow_pickle=False)

    def store_pkl(self, value: Any, label: str = "file.pkl") -> str:
        """Store any picklable object. Only load pickles from people you trust."""
        import pickle

        return self.store_bytes(pickle.dumps(value, protocol=4), label)

    def load_pkl(self, uri: UriLike) -> Any:
        import pickle

        return pickle.loads(self.load_bytes(uri))

    # -- mutables -----------------------------------------------------------------

    def get(self, key: JSON, default: JSON = None) -> JSON:
        """The value stored under a mutable key, or `default` if there is none."""
        found, value = self.transport.mutable_get(key)
        return value if found else default

    def set(self, key: JSON, value: JSON, update: bool = True) -> None:
        self.transport.mutable_set(key, value, update)

    def delete(self, key: JSON) -> None:
        self.transport.mutable_delete(key)


class InvalidChannelNameError(InvalidInputError, ValueError):
    """A channel name that breaks the one rule for channel names (`config.CHANNEL_NAME`)."""


def check_channel_name(name: object) -> str:
    """`name` if it is a channel name, else `InvalidChannelNameError` naming it.

    The rule is the `channel` setting's, so a name refused here is refused everywhere.
    """
    try:
        return SETTINGS["channel"].parse(name)
    except ValueError as exc:
        raise InvalidChannelNameError(f"invalid channel name {name!r}: {exc}") from None


def _parsed(uri: UriLike) -> ContentUri:
    """A `ContentUri` as it is, text parsed (and checked)."""
    return uri if isinstance(uri, ContentUri) else parse_uri(uri)


def _basename(path: PathLike) -> Optional[str]:
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    return name or None


def _copy_verified(
    source: Path, dest: PathLike, uri: ContentUri, progress: Optional[Progress]
) -> Path:
    """Copy an object to `dest` atomically, checking its hash on the way.

    The copy is written to a new staging file beside the target and renamed over it, so
    nothing is ever written through: only a missing path, a regular file or a symlink to
    a regular file (the symlink itself is replaced; its target is not touched) is
    replaced. See `_final_destination` for what is refused.
    """
    final = _final_destination(dest, uri)
    if _same_file(source, final):
        # A linked file loaded onto itself: check it, but do not replace it (that would
        # give it a new inode, and so make its link stale).
        with open(source, "rb", buffering=0) as src:
            result = hash_stream(src.readinto, None, progress=progress, manifest=False)
        _check_hash(source, result.sha1, uri)
        return final
    staging = final.with_name(f".{final.name}.kachery-{os.getpid()}-{os.urandom(4).hex()}.part")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o666)
    try:
        with open(source, "rb", buffering=0) as src, os.fdopen(fd, "wb", buffering=0) as out:
            result = hash_stream(src.readinto, writer_for(out), progress=progress, manifest=False)
        _check_hash(source, result.sha1, uri)
        _check_replaceable(final)  # again: it may have changed while the bytes were copied
        os.replace(staging, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    return final


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _check_hash(source: Path, sha1: str, uri: ContentUri) -> None:
    if sha1 != uri.sha1:
        raise IntegrityError(
            f"{source} does not hash to {uri.sha1}",
            "the stored object is damaged; store it again (or run `kachery-client verify`)",
        )


def _final_destination(dest: PathLike, uri: ContentUri) -> Path:
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
    kind = _kind(st.st_mode)
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
            f"destination {str(path)!r} is a symbolic link to a {_kind(target.st_mode)}, "
            "not a regular file",
            "give a file path",
        )
    if kind != "regular file":
        raise InvalidInputError(
            f"destination {str(path)!r} is a {kind}, not a regular file",
            "give a file path (only regular files are replaced)",
        )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
