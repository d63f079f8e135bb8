"""The fsspec filesystem for `sha1://` and `sha1dir://` URIs (entry points `fsspec.specs`).

Installed with kachery, it lets fsspec-aware readers take URIs with no import of kachery:

    >>> pd.read_csv("sha1dir://<hash>.rec/sorting/units.csv")                # doctest: +SKIP
    >>> zarr.open_group("sha1dir://<hash>.rec/lfp.zarr", mode="r")            # doctest: +SKIP
    >>> h5py.File(fsspec.open("sha1://<hash>?manifest=<hash>").open(), "r")    # doctest: +SKIP

Files open as `kc.open` opens them (lazy, every chunk hash-checked before use). Paths are
the URIs themselves (scheme included), so what `ls`, `find` and `glob` return can be
opened again anywhere. It is read-only: an address is known only once the bytes are
stored, so writing is refused with a pointer to `kc.store_file` / `kc.store_dir`.
`storage_options` name the client's settings: `profile`, `backend`, `host`, `port`,
`token`, `channel` (or any setting by its name, e.g. `storage_dir`).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional, Tuple, Union

from fsspec.spec import AbstractFileSystem

from kachery_core.content.directory import Directory, FileEntry
from kachery_core.content.uri import (
    DIR_SCHEME,
    SCHEME,
    ContentUri,
    DirUri,
    format_dir_uri,
    parse_any_uri,
)
from kachery_core.errors import InvalidInputError

OPTION_NAMES = {
    "profile": "profile",
    "backend": "backend",
    "host": "daemon_host",
    "port": "daemon_port",
    "token": "auth_token",
    "channel": "channel",
}
"""`storage_options` keys and the settings they set."""

_FSSPEC_KEYS = (
    "asynchronous",
    "loop",
    "skip_instance_cache",
    "use_listings_cache",
    "listings_expiry_time",
    "max_paths",
)


class ReadOnlyError(InvalidInputError, PermissionError):
    """A write through the filesystem: content addresses are made by storing."""


def read_only(path: str, operation: str = "writing") -> ReadOnlyError:
    return ReadOnlyError(
        f"{path}: {operation} is not possible, kachery URIs are read-only",
        "store with kc.store_file / kc.store_dir (or `kachery-client store-file [-r]`): "
        "an address is known only after the bytes",
    )


class KacheryFileSystem(AbstractFileSystem):
    """Read-only access to stored files and trees by URI."""

    protocol = ("sha1", "sha1dir")
    root_marker = ""

    def __init__(self, *args: Any, **options: Any) -> None:
        for key in _FSSPEC_KEYS:
            options.pop(key, None)
        super().__init__(*args)
        self._settings = {OPTION_NAMES.get(k, k): v for k, v in options.items() if v is not None}
        self._client: Any = None
        self._env: Tuple[Tuple[str, str], ...] = ()
        self._trees: Dict[str, Directory] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The `Client` these options describe, made on first use (no I/O before), and
        made again when a KACHERY_* variable changes (fsspec keeps filesystems around)."""
        env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("KACHERY_")))
        with self._lock:
            if self._client is None or self._env != env:
                from kachery_client.client import Client

                if self._client is not None:
                    self._client.close()
                self._client = Client(_source="fsspec storage_options", **self._settings)
                self._env = env
                self._trees.clear()
            return self._client

    # -- paths ---------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """A path is its URI, without trailing slashes; a bare `HASH...` is taken as one."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(path)
        if not text.startswith((SCHEME, DIR_SCHEME)):
            text = (DIR_SCHEME if "." in text[40:41] or "/" in text else SCHEME) + text
        head, _, query = text.partition("?")
        head = head.rstrip("/")
        return f"{head}?{query}" if query else head

    @classmethod
    def _get_kwargs_from_urls(cls, path: str) -> Dict[str, Any]:
        return {}

    def _parse(self, path: str) -> Union[ContentUri, DirUri]:
        return parse_any_uri(self._strip_protocol(path))

    def _tree(self, uri: DirUri) -> Directory:
        """The directory object (content-addressed, so kept once read)."""
        found = self._trees.get(uri.sha1)
        if found is None:
            from kachery_client.directories.operations import read_directory

            found = read_directory(self.client.transport, uri)
            self._trees[uri.sha1] = found
        return found

    def _lookup(self, uri: DirUri) -> Union[FileEntry, Directory]:
        return self._tree(uri).lookup(uri.path, str(uri.root()))

    # -- reading -------------------------------------------------------------------------

    def info(self, path: str, **kwargs: Any) -> Dict[str, Any]:
        """`name`, `size`, `type`, `sha1` and, for a large file, `manifest`."""
        name = self._strip_protocol(path)
        uri = self._parse(path)
        if isinstance(uri, ContentUri):
            with self._open(name) as f:
                return _file_info(name, f.size, uri.sha1, uri.manifest_sha1)
        entry = self._lookup(uri)
        if isinstance(entry, FileEntry):
            return _file_info(name, entry.size, entry.sha1, entry.manifest_sha1)
        return {"name": name, "size": 0, "type": "directory", "sha1": None}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> List[Any]:
        name = self._strip_protocol(path)
        uri = self._parse(path)
        if isinstance(uri, ContentUri):
            entries = [self.info(name)]
        else:
            found = self._lookup(uri)
            if isinstance(found, FileEntry):
                entries = [_file_info(name, found.size, found.sha1, found.manifest_sha1)]
            else:
                entries = _listing(uri, found)
        return entries if detail else [e["name"] for e in entries]

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise read_only(str(path), f"opening with mode {mode!r}")
        from kachery_client.lazy.file import open_uri

        client = self.client
        return open_uri(client.transport, self._parse(path), client.config)

    def ukey(self, path: str) -> str:
        info = self.info(path)
        return str(info.get("sha1") or self._strip_protocol(path))

    def checksum(self, path: str) -> int:
        return int(self.ukey(path)[:16], 16)

    # -- writing: refused ------------------------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise read_only(str(path), "making a directory")

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        raise read_only(str(path), "making a directory")

    def rm_file(self, path: str) -> None:
        raise read_only(str(path), "removing")

    def rm(self, path: Any, recursive: bool = False, maxdepth: Optional[int] = None) -> None:
        raise read_only(str(path), "removing")

    def rmdir(self, path: str) -> None:
        raise read_only(str(path), "removing")

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        raise read_only(str(path2), "copying")

    def mv(self, path1: Any, path2: Any, *args: Any, **kwargs: Any) -> None:
        raise read_only(str(path1), "moving")

    def put_file(self, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> None:
        raise read_only(str(rpath), "uploading")

    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        raise read_only(str(path), "writing")

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        raise read_only(str(path), "touching")


def _file_info(
    name: str, size: int, sha1: Optional[str], manifest: Optional[str]
) -> Dict[str, Any]:
    return {"name": name, "size": size, "type": "file", "sha1": sha1, "manifest": manifest}


def _listing(uri: DirUri, tree: Directory) -> List[Dict[str, Any]]:
    """A directory's entries, sub-directories first, each named by its own URI."""
    out: List[Dict[str, Any]] = []
    for name in sorted(tree.dirs):
        shown = _child(uri, name)
        out.append({"name": shown, "size": 0, "type": "directory", "sha1": None})
    for name in sorted(tree.files):
        entry = tree.files[name]
        out.append(_file_info(_child(uri, name), entry.size, entry.sha1, entry.manifest_sha1))
    return out


def _child(uri: DirUri, name: str) -> str:
    path: Tuple[str, ...] = uri.path + (name,)
    return format_dir_uri(uri.sha1, uri.label, path)
