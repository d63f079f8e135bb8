"""Requests to a node's HTTP API: what the `http` and `remote` backends send and read.

`NodeHttp` sends one request with the session's credential (retried once when a rotated
code is refused), turns a failed answer into the `KacheryError` its error type names (the
status code for nodes that send none), and reads framed progress streams. The answers'
adapters (`ResponseStream` for a streamed body, `UploadBody` for a file being sent) are
public for the backends built on it.

    >>> http = NodeHttp("http://127.0.0.1:14507", session, (10.0, 60.0))   # doctest: +SKIP
    >>> http.post_json("/mutable/get", {"key": "k"})                        # doctest: +SKIP
    {'success': True, 'found': False, 'value': None}
"""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Dict, Optional, Tuple, Type

from kachery_core.content.hashing import Progress
from kachery_core.errors import InvalidInputError, KacheryError, NotFoundError, TransportError
from kachery_core.protocol.json_values import json_text
from kachery_core.protocol.probe import Tls
from kachery_core.protocol.wire import (
    AUTH_HEADER,
    ERROR_TYPE_HEADER,
    error_from_type,
    one_line,
    read_frames,
)
from kachery_core.store.base import StoredObject

from .node_session import NodeSession

if TYPE_CHECKING:
    import requests

STREAM_BLOCK = 4 << 20
"""Bytes per block of a stream sent to `/store`."""
PARALLEL_TRANSFERS = 4
"""Threads a batch of files runs on over one node connection pool (`parallel_transfers` of
the http and remote backends). Enough to keep a node busy while the client hashes and
writes what came back, and to hide a network's round trips; more adds little with CPython's
one interpreter lock on the client and the node's one event loop (measured in
benchmarks/README.md), and each thread holds a connection."""
POOL_CONNECTIONS = 2 * PARALLEL_TRANSFERS
"""Connections kept open to the node: one per batch thread, and room for a thread's
nested request (a manifest fetched while a download waits) without discarding any."""


class NodeHttp:
    """One node's HTTP API, reached at `base_url` with the rules of `session`."""

    def __init__(
        self,
        base_url: str,
        session: NodeSession,
        timeout: Tuple[float, float],
        tls: Optional[Tls] = None,
    ) -> None:
        self.base_url = base_url
        self.session = session
        self.timeout = timeout
        self._tls = tls
        self._requests: Optional[requests.Session] = None
        self._creating = threading.Lock()

    @property
    def requests_session(self) -> requests.Session:
        """One session for every thread: its pool holds `POOL_CONNECTIONS` connections, so
        a batch's threads reuse them instead of opening one per file."""
        if self._requests is None:
            with self._creating:
                if self._requests is None:
                    self._requests = _pooled_session()
        return self._requests

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        body: Optional[Callable[[], Any]] = None,
        headers: Optional[Dict[str, str]] = None,
        stream: bool = False,
        auth: bool = True,
        what: str = "",
        replayable: bool = True,
    ) -> requests.Response:
        """One request; an answer other than 200 raises the error it stands for.

        `body()` makes the request body, again for a retry; `replayable=False` says it
        cannot (a stream read once), so a refused code is not retried.
        """
        if not auth:
            return self._send(method, path, json_body, body, headers, stream, what, None)

        def send(credential: str) -> requests.Response:
            return self._send(method, path, json_body, body, headers, stream, what, credential)

        return self.session.with_credential(send, replayable)

    def _send(
        self,
        method: str,
        path: str,
        json_body: Any,
        body: Optional[Callable[[], Any]],
        headers: Optional[Dict[str, str]],
        stream: bool,
        what: str,
        credential: Optional[str],
    ) -> requests.Response:
        import requests

        all_headers = dict(headers or {})
        if credential is not None:
            all_headers[AUTH_HEADER] = credential
        encoded: Optional[bytes] = None
        if json_body is not None:  # our own check, so every backend fails alike (json_values)
            encoded = json_text(json_body, f"the request body of {path}").encode()
            all_headers["Content-Type"] = "application/json"
        try:
            response = self.requests_session.request(
                method,
                self.base_url + path,
                data=body() if body else encoded,
                headers=all_headers,
                stream=stream,
                timeout=self.timeout,
                # per request: a session-wide value loses to REQUESTS_CA_BUNDLE
                verify=(self._tls.ca_file or True) if self._tls else True,
            )
        except requests.exceptions.SSLError as exc:
            raise TransportError(
                f"TLS with the node at {self.base_url} failed: {_root_cause(exc)}",
                "is its certificate trusted? set KACHERY_TLS_CA_FILE to its CA certificate",
            ) from None
        except Exception as exc:  # the answer's body is read here too, unless streamed
            error = read_error(exc, self.base_url, what or path, self.timeout[1])
            if error is exc:
                raise
            raise error from None
        if response.status_code != 200:
            raise self._error_for(response)
        return response

    def _error_for(self, response: requests.Response) -> KacheryError:
        """The error a failed answer stands for: by its error type, else by its status."""
        reason = one_line(response.text, 500) or response.reason
        status = response.status_code
        kind = response.headers.get(ERROR_TYPE_HEADER)
        response.close()

        def by_status() -> KacheryError:
            if status == 403:
                return self.session.refused(reason)
            if status == 404:
                return NotFoundError(reason)
            if 400 <= status < 500:
                return InvalidInputError(reason)
            return TransportError(f"the node at {self.base_url} failed ({status}): {reason}")

        return self.session.node_error(kind, reason, by_status)

    def post_json(self, path: str, doc: Dict[str, Any], what: str = "") -> Any:
        return self.request("POST", path, json_body=doc, what=what).json()

    def signature_for(self, nonce: str) -> object:
        """The node's signature of the probe for `nonce` (`GET /probe?nonce=`, no credential)."""
        return self.request("GET", f"/probe?nonce={nonce}", auth=False).json().get("signature")

    def follow(
        self,
        response: requests.Response,
        progress: Optional[Progress],
        what: str,
        untyped: Callable[[str], KacheryError] = KacheryError,
    ) -> Dict[str, Any]:
        """Read a framed stream: report progress, return `finished`, raise on `error`.

        An error message's `errorType` names the exception; `untyped(text)` is the one for
        a message without a type (from an older node).
        """

        def read(size: int) -> bytes:
            try:
                return response.raw.read(size)
            except Exception as exc:
                error = read_error(exc, self.base_url, what, self.timeout[1])
                if error is exc:
                    raise
                raise error from None

        with response:
            for message in read_frames(read):
                kind = message.get("type")
                if kind == "progress" and progress is not None:
                    progress(int(message.get("bytesLoaded", 0)))
                elif kind == "finished":
                    return message
                elif kind == "error":
                    text = str(message.get("error"))
                    error_type = message.get("errorType")
                    if not isinstance(error_type, str):
                        raise untyped(one_line(text))
                    raise error_from_type(error_type, text)
        raise TransportError(f"the node at {self.base_url} ended {what} without an answer")

    def close(self) -> None:
        if self._requests is not None:
            self._requests.close()
            self._requests = None


def _pooled_session() -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    for scheme in ("http://", "https://"):
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_CONNECTIONS)
        session.mount(scheme, adapter)
    return session


def lost_node(base_url: str, what: str) -> TransportError:
    """The error for a connection to the node that broke: refused, reset, or cut mid-answer."""
    return TransportError(
        f"lost the node at {base_url} during {what}",
        "is it still running? nothing partial was kept; try again",
    )


def read_error(exc: Exception, base_url: str, what: str, read_timeout: float) -> Exception:
    """What a failure to send a request or read its answer stands for.

    Every way a connection is lost (requests' ConnectionError and ChunkedEncodingError,
    urllib3's ProtocolError and IncompleteRead, http.client's, a reset socket) is one
    `lost_node` error, whether it comes before the answer or in the middle of a stream; a
    stall is a timeout; a TLS failure names the certificate. Anything else (a bug, a
    `KacheryError` already made) is returned as it is.
    """
    if isinstance(exc, KacheryError):
        return exc
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return TransportError(
            f"TLS with the node at {base_url} failed: {_root_cause(exc)}",
            "is its certificate trusted? set KACHERY_TLS_CA_FILE to its CA certificate",
        )
    if isinstance(exc, requests.ConnectionError):  # (a connect timeout is one too)
        return lost_node(base_url, what)
    if isinstance(exc, _timeouts()):
        return TransportError(
            f"the node at {base_url} did not answer {what} within {read_timeout:g} s",
            "is it overloaded or stalled? KACHERY_READ_TIMEOUT sets the limit",
        )
    if isinstance(exc, _connection_losses()):
        return lost_node(base_url, what)
    return exc


def _timeouts() -> Tuple[Type[BaseException], ...]:
    import socket

    import requests
    import urllib3

    return (requests.Timeout, urllib3.exceptions.TimeoutError, socket.timeout)


def _connection_losses() -> Tuple[Type[BaseException], ...]:
    """After timeouts: a urllib3 read timeout is a urllib3 HTTPError too."""
    import http.client

    import requests
    import urllib3

    return (
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,  # ProtocolError, IncompleteRead, InvalidChunkLength
        http.client.HTTPException,  # IncompleteRead
        ConnectionError,  # reset, aborted, refused; a broken pipe while sending
    )


class ResponseStream(io.RawIOBase):
    """A streamed HTTP body as a binary file object that reports a dropped connection."""

    def __init__(
        self,
        response: requests.Response,
        base_url: str = "",
        what: str = "the download",
        read_timeout: float = 0.0,
    ) -> None:
        super().__init__()
        self._response = response
        self._expected = int(response.headers.get("Content-Length", "-1"))
        self._got = 0
        self._base_url = base_url or _origin(response.url)
        self._what = what
        self._read_timeout = read_timeout
        direct = _socket_body(response)
        self._readinto: Callable[[Any], Optional[int]] = (
            direct.readinto if direct is not None else response.raw.readinto
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            n = self._readinto(buffer)
        except Exception as exc:
            error = read_error(exc, self._base_url, self._what, self._read_timeout)
            if error is exc:
                raise TransportError(f"the node dropped {self._what}: {exc}") from None
            raise error from None
        self._got += n or 0
        if not n and 0 <= self._expected != self._got:
            raise lost_node(self._base_url, self._what)
        return n or 0

    def close(self) -> None:
        if not self.closed:
            self._response.close()
        super().close()


def _socket_body(response: requests.Response) -> Optional[Any]:
    """The standard library's response under urllib3's, when the body can be read from it
    as it is (no content coding), else None.

    Its `readinto` receives straight from the socket into the caller's buffer, where
    urllib3's reads into a new bytes object and copies it again (two extra copies of every
    block, and fresh memory for each). It stops at the Content-Length and keeps the
    socket's read timeout; a body cut short reads as an early end, which `readinto` above
    reports as a lost node.
    """
    import http.client

    coding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        return None
    body = getattr(response.raw, "_fp", None)
    return body if isinstance(body, http.client.HTTPResponse) else None


UPLOAD_BLOCK = 1 << 20
"""Bytes read from a file and handed to the socket per send when uploading it."""


class UploadBody:
    """A file sent as a request body, reporting to `progress` the bytes read from it so far.

    Deliberately not iterable, so that requests sends it by `read` in blocks (a file
    object would be sent line by line) with the Content-Length given by the caller.
    """

    def __init__(self, file: BinaryIO, progress: Optional[Progress]) -> None:
        self._file = file
        self._progress = progress
        self._buffer: Optional[memoryview] = None
        self.sent = 0

    def read(self, size: int = -1) -> Any:
        """The next block, in one reused buffer of `UPLOAD_BLOCK` bytes whatever `size`
        asks (urllib3 asks for 16 KiB: a send call and a Python loop turn per 16 KiB).
        The sender is done with a block before it asks for the next one."""
        if self._buffer is None:
            self._buffer = memoryview(bytearray(UPLOAD_BLOCK))
        n = self._file.readinto(self._buffer) or 0  # type: ignore[attr-defined]
        self.sent += n
        if n and self._progress is not None:
            self._progress(self.sent)
        return self._buffer[:n]

    def close(self) -> None:
        self._file.close()


def stored_object(doc: Dict[str, Any], size: int = -1) -> StoredObject:
    """A store's answer; `size` is -1 where the client did not know it (a stream)."""
    if not doc.get("success"):
        raise KacheryError(f"the node refused the store: {doc.get('error')}")
    return StoredObject(str(doc["sha1"]), size, doc.get("manifestSha1"))


def _origin(url: str) -> str:
    """`scheme://host:port` of a URL."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _root_cause(exc: BaseException) -> str:
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return one_line(str(exc), 200)
