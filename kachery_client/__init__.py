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
    IntegrityError,
    InvalidInputError,
    InvalidUriError,
    KacheryError,
    NotFoundError,
    StaleLinkError,
    TreeProblemsError,
    UnsupportedOperation,
)

from .client import Client

if _TYPE_CHECKING:  # annotations only; kept out of the module's namespace
    from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "Client",
    "ContentUri",
    "DirUri",
    "parse_uri",
    "parse_any_uri",
    "__version__",
    "KacheryError",
    "ConfigError",
    "IntegrityError",
    "InvalidInputError",
    "InvalidUriError",
    "NotFoundError",
    "StaleLinkError",
    "UnsupportedOperation",
    "TreeProblemsError",
    "store_file",
    "store_files",
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


def store_file(path: Any, label: Optional[str] = None) -> str:
    return default_client().store_file(path, label)


def link_file(path: Any, label: Optional[str] = None) -> str:
    return default_client().link_file(path, label)


def store_files(paths: Sequence[Any], link: bool = False) -> List[str]:
    return default_client().store_files(paths, link=link)


def store_dir(
    path: Any,
    label: Optional[str] = None,
    link: bool = False,
    skip_errors: bool = False,
    upload_to_channel: Optional[str] = None,
) -> str:
    return default_client().store_dir(
        path, label, link=link, skip_errors=skip_errors, upload_to_channel=upload_to_channel
    )


def read_dir(uri: Any) -> Dict[str, Any]:
    return default_client().read_dir(uri)


def load_dir(uri: Any, dest: Any, force: bool = False, copy: bool = False) -> str:
    return default_client().load_dir(uri, dest, force=force, copy=copy)


def load_file(uri: Any, dest: Any = None) -> str:
    return default_client().load_file(uri, dest)


def load_bytes(uri: Any, start: int = 0, end: Optional[int] = None) -> bytes:
    return default_client().load_bytes(uri, start, end)


def open(uri: Any) -> Any:  # noqa: A001 - the API's name
    """A seekable, read-only binary file over a stored object, read lazily and verified."""
    return default_client().open(uri)


def store_text(text: str, label: str = "file.txt") -> str:
    return default_client().store_text(text, label)


def load_text(uri: Any) -> str:
    return default_client().load_text(uri)


def store_json(value: Any, label: str = "file.json") -> str:
    return default_client().store_json(value, label)


def load_json(uri: Any) -> Any:
    return default_client().load_json(uri)


def store_npy(array: Any, label: str = "file.npy") -> str:
    return default_client().store_npy(array, label)


def load_npy(uri: Any) -> Any:
    return default_client().load_npy(uri)


def store_pkl(value: Any, label: str = "file.pkl") -> str:
    return default_client().store_pkl(value, label)


def load_pkl(uri: Any) -> Any:
    return default_client().load_pkl(uri)


def get(key: Any, default: Any = None) -> Any:
    return default_client().get(key, default)


def set(key: Any, value: Any, update: bool = True) -> None:  # noqa: A001 - the API's name
    default_client().set(key, value, update)


def delete(key: Any) -> None:
    default_client().delete(key)
