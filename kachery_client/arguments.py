"""What callers pass the `Client`, checked and parsed: URIs, channel names, file names.

Kept apart from client.py so that module stays the API; `client` re-exports
`check_channel_name` and `InvalidChannelNameError`, which the CLI uses.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Union

from kachery_core.content.uri import ContentUri, DirUri, parse_any_uri, parse_dir_uri
from kachery_core.errors import InvalidInputError
from kachery_core.settings.config import SETTINGS

if TYPE_CHECKING:
    from kachery_client.client import PathLike, UriLike


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


def _parsed(uri: UriLike) -> Union[ContentUri, DirUri]:
    """A parsed URI as it is, text parsed (and checked)."""
    return uri if isinstance(uri, (ContentUri, DirUri)) else parse_any_uri(uri)


def _dir_uri(uri: UriLike) -> DirUri:
    return (
        uri if isinstance(uri, DirUri) else parse_dir_uri(uri if isinstance(uri, str) else str(uri))
    )


def _size(path: PathLike) -> Optional[int]:
    """A file's size for a progress bar's total (None when it cannot be read: the store
    itself then says why)."""
    try:
        return os.stat(path).st_size
    except (OSError, TypeError, ValueError):
        return None


def _label_of(uri: object) -> str:
    """How a bar names the object being loaded: its name, else the start of its hash."""
    rest = str(uri).split("?", 1)[0].partition("://")[2]
    return rest.rsplit("/", 1)[-1] if "/" in rest else rest[:12]


def _shown_name(path: PathLike) -> str:
    """A file's or folder's name as a progress bar shows it, whatever its bytes."""
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _basename(path: PathLike) -> Optional[str]:
    """The name a file's URI gets; a name that is not UTF-8 cannot be one (a URI is text)."""
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"the file name {os.fsencode(name)!r} is not UTF-8, so it cannot be its URI's name",
            "name it with --label NAME (label= in Python; one file at a time), or rename it",
        ) from None
    return name or None
