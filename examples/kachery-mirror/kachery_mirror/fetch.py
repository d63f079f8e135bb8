"""Downloading objects from the web server into the cache, hash-checked on the way in.

The body is streamed in blocks straight into a `LocalStorage` staging file, so memory
stays flat whatever the size, and the object appears in the cache only after its bytes
hashed to the name it was asked for. HTTP failures become one-line kachery errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import requests

from kachery_core.content.hashing import BLOCK_SIZE, Progress
from kachery_core.errors import IntegrityError, TransportError
from kachery_core.store.layout import StorageLayout
from kachery_core.store.local import LocalStorage

from . import __version__
from .settings import TABLE, URL_ENV

_RELATIVE = StorageLayout(Path())
"""The storage layout relative to its root: object paths double as URL paths."""


class ObjectFetcher:
    """GETs `<base_url>/sha1/aa/bb/cc/<hash>` into a cache, one object at a time."""

    def __init__(self, base_url: str, timeout: float, cache: LocalStorage) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.cache = cache
        self._session: Optional[requests.Session] = None

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            # Objects are hashed as served: ask for them uncompressed.
            session.headers["Accept-Encoding"] = "identity"
            session.headers["User-Agent"] = f"kachery-mirror/{__version__}"
            self._session = session
        return self._session

    def url_of(self, sha1: str) -> str:
        return f"{self.base_url}/{_RELATIVE.object_path(sha1).as_posix()}"

    def fetch(self, sha1: str, progress: Optional[Progress] = None) -> Optional[Path]:
        """Download one object into the cache; None when the server does not have it.

        Raises `IntegrityError` (naming the URL; nothing is cached) when the bytes do not
        hash to `sha1`, and `TransportError` when the server cannot be reached or fails.
        """
        url = self.url_of(sha1)
        try:
            response = self.session.get(url, stream=True, timeout=self.timeout)
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        with response:
            if response.status_code in (404, 410):
                return None
            if response.status_code != 200:
                raise _bad_status(response, url)
            self._receive(response, url, sha1, progress)
        return self.cache.find(sha1)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _receive(
        self, response: requests.Response, url: str, sha1: str, progress: Optional[Progress]
    ) -> None:
        with self.cache.object_writer() as writer:
            try:
                for block in response.iter_content(BLOCK_SIZE):
                    writer.write(block)
                    if progress is not None:
                        progress(writer.size)
            except requests.RequestException as exc:
                raise TransportError(
                    f"the download of {url} broke off after {writer.size} bytes: {_reason(exc)}",
                    "try again; nothing was cached",
                ) from None
            try:
                writer.commit(expected_sha1=sha1)
            except IntegrityError:
                raise IntegrityError(
                    f"the mirror served corrupt bytes: {url} does not hash to {sha1}",
                    "nothing was cached; the copy on the web server is damaged, "
                    "so store the file there again",
                ) from None

    def _unreachable(self, exc: requests.RequestException) -> TransportError:
        if isinstance(exc, requests.Timeout):
            what = f"no answer within {self.timeout:g} s"
            hint = f"is the server overloaded? raise timeout in {TABLE} if it is just slow"
        else:
            what = _reason(exc)
            hint = f"is the web server running? check url in {TABLE} or {URL_ENV}"
        return TransportError(f"cannot reach the mirror at {self.base_url}: {what}", hint)


def _bad_status(response: requests.Response, url: str) -> TransportError:
    status = f"{response.status_code} {response.reason or ''}".strip()
    if response.status_code in (401, 403):
        return TransportError(
            f"the mirror refused access to {url} ({status})",
            "the web server must let this machine read the storage directory",
        )
    return TransportError(f"the mirror answered {status} for {url}", "try again later")


def _reason(exc: BaseException) -> str:
    """A few words for a `requests` failure, whose own text is a nested repr."""
    text = str(exc)
    for needle, words in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        ("Connection reset", "connection reset by the server"),
        ("timed out", "timed out"),
        ("IncompleteRead", "the server closed the connection early"),
        ("Connection broken", "the connection broke"),
    ):
        if needle in text:
            return words
    return type(exc).__name__
