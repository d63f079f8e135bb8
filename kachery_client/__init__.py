"""kachery's Python API: `import kachery_client as kc`.

    >>> import kachery_client as kc
    >>> uri = kc.store_json({"a": 1})
    >>> kc.load_json(uri)
    {'a': 1}

The module-level functions use a default `Client` configured from the environment and
config file (re-made when a KACHERY_* variable changes). Make your own `Client` for
explicit settings.
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING as _TYPE_CHECKING

from kachery_core import __version__
from kachery_core.content.uri import ContentUri, DirUri, parse_any_uri, parse_uri
from kachery_core.errors import (
    ConfigError,
    FolderProblemsError,
    FormatError,
    IntegrityError,
    InvalidInputError,
    InvalidUriError,
    KacheryError,
    NotFoundError,
    StaleLinkError,
    UnsupportedOperation,
)

from .client import Client
from .storage_use import init_shared

if _TYPE_CHECKING:  # annotations only; kept out of the module's namespace
    from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple

    import numpy

    from kachery_client.client import PathLike, UriLike
    from kachery_client.directories.scan import ScannedFolder
    from kachery_client.progress_bars import ShowProgress, ShowTreeProgress
    from kachery_core.backend.base import JSON
    from kachery_core.store.collect import CollectReport

from typing import Callable as _Callable
from typing import TypeVar as _TypeVar

_F = _TypeVar("_F", bound=_Callable[..., object])

__all__ = [
    "Client",
    "ContentUri",
    "DirUri",
    "parse_uri",
    "parse_any_uri",
    "__version__",
    "KacheryError",
    "ConfigError",
    "FormatError",
    "IntegrityError",
    "InvalidInputError",
    "InvalidUriError",
    "NotFoundError",
    "StaleLinkError",
    "UnsupportedOperation",
    "FolderProblemsError",
    "store_file",
    "store_files",
    "store_stream",
    "store_bytes",
    "store_dir",
    "read_dir",
    "load_dir",
    "link_file",
    "load_file",
    "load_bytes",
    "open",
    "store_text",
    "load_text",
    "store_json",
    "load_json",
    "store_npy",
    "load_npy",
    "store_pkl",
    "load_pkl",
    "get",
    "set",
    "delete",
    "usage",
    "pin",
    "unpin",
    "drop",
    "gc",
    "init_shared",
    "default_client",
]


def __dir__() -> list[str]:
    """The API (`__all__`) and dunders: what `dir(kachery_client)` and completion offer."""
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


# Not the API: `from __future__ import annotations` binds this name in the module.
del annotations

_default: Optional[Tuple[Tuple[Tuple[str, str], ...], Client]] = None


def default_client() -> Client:
    """The client behind the module-level functions."""
    global _default
    key = tuple(sorted((k, v) for k, v in _os.environ.items() if k.startswith("KACHERY_")))
    if _default is None or _default[0] != key:
        if _default is not None:
            _default[1].close()
        _default = (key, Client(_source="Client() argument"))
    return _default[1]


def _api(function: _F) -> _F:
    """Give a module function the docstring of the `Client` method it calls."""
    function.__doc__ = getattr(Client, function.__name__).__doc__
    return function


@_api
def store_file(
    path: PathLike,
    label: Optional[str] = None,
    progress: ShowProgress = None,
    upload_to_channel: Optional[str] = None,
    upload_progress: ShowProgress = None,
) -> str:
    return default_client().store_file(path, label, progress, upload_to_channel, upload_progress)


@_api
def link_file(path: PathLike, label: Optional[str] = None, progress: ShowProgress = None) -> str:
    return default_client().link_file(path, label, progress)


@_api
def store_files(
    paths: Sequence[PathLike], *, link: bool = False, progress: ShowTreeProgress = None
) -> List[str]:
    return default_client().store_files(paths, link=link, progress=progress)


@_api
def store_stream(
    stream: BinaryIO,
    label: Optional[str] = None,
    progress: ShowProgress = None,
    upload_to_channel: Optional[str] = None,
) -> str:
    return default_client().store_stream(stream, label, progress, upload_to_channel)


@_api
def store_bytes(data: bytes, label: Optional[str] = None) -> str:
    return default_client().store_bytes(data, label)


@_api
def store_dir(
    path: PathLike,
    label: Optional[str] = None,
    *,
    link: bool = False,
    skip_errors: bool = False,
    upload_to_channel: Optional[str] = None,
    progress: ShowTreeProgress = None,
    scanned: Optional[ScannedFolder] = None,
) -> str:
    return default_client().store_dir(
        path,
        label,
        link=link,
        skip_errors=skip_errors,
        upload_to_channel=upload_to_channel,
        progress=progress,
        scanned=scanned,
    )


@_api
def read_dir(uri: UriLike, *, channel: Optional[str] = None) -> Dict[str, Any]:
    return default_client().read_dir(uri, channel=channel)


@_api
def load_dir(
    uri: UriLike,
    dest: PathLike,
    *,
    force: bool = False,
    copy: bool = False,
    progress: ShowTreeProgress = None,
    channel: Optional[str] = None,
) -> str:
    return default_client().load_dir(
        uri, dest, force=force, copy=copy, progress=progress, channel=channel
    )


@_api
def load_file(
    uri: UriLike,
    dest: Optional[PathLike] = None,
    progress: ShowProgress = None,
    *,
    channel: Optional[str] = None,
) -> str:
    return default_client().load_file(uri, dest, progress, channel=channel)


@_api
def load_bytes(
    uri: UriLike, start: int = 0, end: Optional[int] = None, *, channel: Optional[str] = None
) -> bytes:
    return default_client().load_bytes(uri, start, end, channel=channel)


@_api
def open(  # noqa: A001 - the API's name
    uri: UriLike, start: Optional[int] = None, end: Optional[int] = None
) -> BinaryIO:
    return default_client().open(uri, start, end)


@_api
def store_text(text: str, label: str = "file.txt") -> str:
    return default_client().store_text(text, label)


@_api
def load_text(uri: UriLike, *, channel: Optional[str] = None) -> str:
    return default_client().load_text(uri, channel=channel)


@_api
def store_json(value: JSON, label: str = "file.json") -> str:
    return default_client().store_json(value, label)


@_api
def load_json(uri: UriLike, *, channel: Optional[str] = None) -> JSON:
    return default_client().load_json(uri, channel=channel)


@_api
def store_npy(array: numpy.ndarray, label: str = "file.npy") -> str:
    return default_client().store_npy(array, label)


@_api
def load_npy(uri: UriLike, *, channel: Optional[str] = None) -> numpy.ndarray:
    return default_client().load_npy(uri, channel=channel)


@_api
def store_pkl(value: Any, label: str = "file.pkl") -> str:
    return default_client().store_pkl(value, label)


@_api
def load_pkl(uri: UriLike, *, channel: Optional[str] = None) -> Any:
    return default_client().load_pkl(uri, channel=channel)


@_api
def get(key: JSON, default: JSON = None) -> JSON:
    return default_client().get(key, default)


@_api
def set(key: JSON, value: JSON, update: bool = True) -> None:  # noqa: A001 - the API's name
    default_client().set(key, value, update)


@_api
def delete(key: JSON) -> None:
    default_client().delete(key)


@_api
def usage() -> Dict[str, Dict[str, int]]:
    return default_client().usage()


@_api
def pin(uris: Sequence[UriLike]) -> int:
    return default_client().pin(uris)


@_api
def unpin(uris: Sequence[UriLike]) -> int:
    return default_client().unpin(uris)


@_api
def drop(uris: Sequence[UriLike], force: bool = False) -> List[Tuple[str, int]]:
    return default_client().drop(uris, force)


@_api
def gc(max_size: Optional[int] = None, dry_run: bool = False) -> CollectReport:
    return default_client().gc(max_size, dry_run)
