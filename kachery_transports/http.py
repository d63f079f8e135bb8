"""`http`: the node on this machine, over its HTTP API, sharing its storage directory.

Chosen automatically when a node answers the probe on the configured host and port.
Objects are read straight from the node's storage directory (no copy through the socket);
stores ask the node to ingest the file's path, or stream the bytes when it cannot read it.

On first use in a process it checks who it is talking to: the probed node ID against the
expected one (`expected_node_id`), proven by the node's signature over a fresh nonce, and
against `<storage>/kachery-node-id`. The storage directory is `KACHERY_STORAGE_DIR` when set
(where the node's storage is mounted on this machine), else the one the probe reports.

    >>> transport = HttpDaemonTransport.from_config(resolve_config())   # doctest: +SKIP
    >>> transport.store_file("data.bin").sha1                            # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

from kachery_core.config import Config
from kachery_core.errors import (
    IntegrityError,
    InvalidInputError,
    KacheryError,
    NodeIdMismatchError,
    NotFoundError,
    TransportError,
)
from kachery_core.hashing import Progress
from kachery_core.local_storage import LocalStorage, open_input_file
from kachery_core.node_key import check_node_id, verify_signature
from kachery_core.probe import ProbeAnswer, Tls, probe_node
from kachery_core.storage import StoredObject
from kachery_core.transport import JSON, NodeInfo, SubfeedWatch
from kachery_core.uri import ContentUri

from .storage_backed import StorageBackedTransport

if TYPE_CHECKING:
    import requests

AUTH_HEADER = "KACHERY-CLIENT-AUTH-CODE"
STREAM_BLOCK = 4 << 20


class HttpDaemonTransport(StorageBackedTransport):
    name = "http"
    unsupported_hint = None
    no_node_hint = (
        "start one with `kachery-daemon start`, or unset --transport/KACHERY_TRANSPORT "
        "to use the embedded storage"
    )

    def __init__(self, config: Config) -> None:
        self.host = config.daemon_host
        self.port = config.daemon_port
        scheme = "https" if config.daemon_tls else "http"
        self.base_url = f"{scheme}://{_url_host(self.host)}:{self.port}"
        self._tls = Tls(_str_or_none(config.tls_ca_file)) if config.daemon_tls else None
        self._expected = config.expected_node_id
        self._expected_source = config.source("expected_node_id")
        self._storage_override = (
            None if config.source("storage_dir") == "default" else Path(config.storage_dir)
        )
        self._config = config
        self.timeout = (config.connect_timeout, config.read_timeout)
        self.channel = config.channel
        self.channel_timeout = config.channel_timeout
        self._probe: Optional[ProbeAnswer] = None
        self._session: Optional[requests.Session] = None

    @classmethod
    def from_config(cls, config: Config) -> HttpDaemonTransport:
        return cls(config)

    # -- connecting ------------------------------------------------------------------

    def _connect(self) -> ProbeAnswer:
        if self._probe is not None:
            return self._probe
        answer = self._identify()
        self.storage = self._attach_storage(answer)
        self._probe = answer
        return answer

    def _identify(self) -> ProbeAnswer:
        """Probe the node and check it is the expected one (by its signature, when one is)."""
        answer = probe_node(self.host, self.port, timeout=self.timeout[0], tls=self._tls)
        if answer is None:
            hint = self.no_node_hint
            if self._tls is not None:
                hint += (
                    "; over HTTPS, also check that its certificate is trusted (KACHERY_TLS_CA_FILE)"
                )
            raise TransportError(f"no kachery node answers at {self.base_url}", hint)
        check_node_id(
            self._expected, answer.node_id, f"the node at {self.base_url}", self._expected_source
        )
        if self._expected:
            self._check_signed_probe()
        return answer

    def _attach_storage(self, answer: ProbeAnswer) -> LocalStorage:
        """The node's storage directory, which this backend reads directly."""
        root = self._storage_override or Path(answer.storage_dir)
        on_disk = _read_text(root / "kachery-node-id")
        if on_disk != answer.node_id:
            found = (
                "has no kachery-node-id file" if on_disk is None else f"belongs to node {on_disk}"
            )
            raise NodeIdMismatchError(
                f"storage directory {root} {found}, but the node at {self.base_url} is {answer.node_id}",
                "point KACHERY_STORAGE_DIR at that node's storage directory (or unset it)",
            )
        return LocalStorage(root, self._config.temp_dir, self._config.keep_temp_files)

    def _check_signed_probe(self) -> None:
        nonce = os.urandom(16).hex()
        doc = self._request("GET", f"/probe?nonce={nonce}", auth=False).json()
        signature = doc.get("signature")
        assert self._expected is not None
        if not isinstance(signature, str) or not verify_signature(
            self._expected, f"kachery-probe:{nonce}".encode(), signature
        ):
            raise NodeIdMismatchError(
                f"the node at {self.base_url} could not prove it is {self._expected} ({self._expected_source})",
                "its probe signature does not verify: connect to the right node",
            )

    def _credential(self) -> str:
        """What goes in the auth header: the access token if one is set, else the auth code."""
        return self._config.auth_token or self._read_auth_code()

    def _read_auth_code(self) -> str:
        path = Path(self._config.auth_code_file or self.storage.layout.client_auth_path)
        try:
            code = path.read_text().strip()
        except FileNotFoundError:
            raise TransportError(
                f"no client-auth file at {path}", "is the node running on that storage directory?"
            ) from None
        except (PermissionError, IsADirectoryError):
            raise TransportError(
                f"cannot read {path}: permission denied",
                f"ask to be added to group {_group_name(path)!r}, which may read it",
            ) from None
        if not code:
            raise TransportError(f"the client-auth file {path} is empty", "is the node running?")
        return code

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def _request(
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
        """One request, with the auth code read fresh from the node's client-auth file.

        The code read just now stays valid for at least one rotation, so a 403 is rare; it
        is retried once with a newly read code, unless the body was a stream that cannot
        be sent again (`replayable=False`).
        """
        import requests

        for attempt in (1, 2):
            all_headers = dict(headers or {})
            if auth:
                all_headers[AUTH_HEADER] = self._credential()
            try:
                response = self.session.request(
                    method,
                    self.base_url + path,
                    json=json_body,
                    data=body() if body else None,
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
            except requests.ConnectionError:
                raise TransportError(
                    f"lost the node at {self.base_url} during {what or path}",
                    "is it still running? nothing partial was kept; try again",
                ) from None
            except requests.Timeout:
                raise TransportError(
                    f"the node at {self.base_url} did not answer {what or path} within "
                    f"{self.timeout[1]:g} s",
                    "is it overloaded or stalled? KACHERY_READ_TIMEOUT sets the limit",
                ) from None
            if response.status_code == 403 and auth and attempt == 1 and replayable:
                response.close()
                continue
            if response.status_code != 200:
                raise _error_for(response, self.base_url)
            return response
        raise AssertionError("unreachable")

    def _post(self, path: str, doc: Dict[str, Any]) -> Any:
        self._connect()
        return self._request("POST", path, json_body=doc).json()

    # -- node ------------------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        answer = self._connect()
        return NodeInfo(
            self.name, answer.node_id, str(self.storage.root), answer.daemon_version, self.base_url
        )

    def describe_location(self) -> str:
        return f"the node at {self.base_url} (storage {self.storage.root})"

    # -- files -----------------------------------------------------------------------

    def store_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        self._connect()
        absolute = os.path.abspath(path)
        with open_input_file(Path(absolute)) as (_, st):
            pass  # the user's own checks first: missing, directory, unreadable
        if self.node_reads_local_paths:
            try:
                answer = self._request(
                    "POST", "/storeFile", json_body={"localFilePath": absolute}, what="store"
                )
                return _stored(answer.json(), st.st_size)
            except InvalidInputError:
                pass  # the node cannot read it (another user, another mount): send the bytes
        return self._send_file(absolute, st.st_size)

    @property
    def node_reads_local_paths(self) -> bool:
        """True when a path on this machine means the same file to the node."""
        return True

    def _send_file(self, path: str, size: int) -> StoredObject:
        def body() -> BinaryIO:
            return open(path, "rb")  # noqa: SIM115 - requests closes it

        response = self._request(
            "POST", "/store", body=body, headers={"Content-Length": str(size)}, what="store"
        )
        return _stored(response.json(), size)

    def store_stream(self, stream: BinaryIO, progress: Optional[Progress] = None) -> StoredObject:
        self._connect()
        seekable = _seekable(stream)
        start = stream.tell() if seekable else 0

        def blocks() -> Iterator[bytes]:
            if seekable:
                stream.seek(start)  # a retry sends the same bytes again
            while True:
                block = stream.read(STREAM_BLOCK)
                if not block:
                    return
                yield block

        response = self._request("POST", "/store", body=blocks, what="store", replayable=seekable)
        return _stored(response.json())

    def link_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        self._connect()
        real = os.path.realpath(path)
        with open_input_file(Path(real)) as (_, st):
            pass
        doc = {"localFilePath": real, "size": st.st_size, "mtime": st.st_mtime}
        return _stored(
            self._request("POST", "/linkFile", json_body=doc, what="link").json(), st.st_size
        )

    def find_path(self, uri: ContentUri) -> Path:
        self._connect()
        path = self.storage.find(uri.sha1)
        return path if path is not None else Path(self._load_through_node(uri, None))

    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        self._connect()
        path = self.storage.find(uri.sha1)
        return str(path) if path is not None else self._load_through_node(uri, progress)

    def _load_through_node(self, uri: ContentUri, progress: Optional[Progress]) -> str:
        body: Dict[str, Any] = {"fileKey": _file_key(uri)}
        if self.channel:  # on a miss the node fetches it through this channel
            body.update(channelName=self.channel, channelTimeout=self.channel_timeout)
        response = self._request("POST", "/loadFile", json_body=body, stream=True, what="load")
        try:
            finished = self._follow(response, progress, f"the load of {uri}")
        except _NodeSaidError as exc:
            if exc.kind is None:  # a plain miss, from a node that knows nothing of channels
                raise NotFoundError(
                    f"{uri} not found by {self.describe_location()}: {exc}"
                ) from None
            raise exc.as_kachery_error() from None
        return str(finished["localFilePath"])

    def _follow(
        self, response: requests.Response, progress: Optional[Progress], what: str
    ) -> Dict[str, Any]:
        """Read a framed stream: report progress, return `finished`, raise on `error`."""
        with response:
            for message in _frames(response.raw):
                kind = message.get("type")
                if kind == "progress" and progress is not None:
                    progress(int(message.get("bytesLoaded", 0)))
                elif kind == "finished":
                    return message
                elif kind == "error":
                    raise _NodeSaidError(str(message.get("error")), message.get("errorType"))
        raise TransportError(f"the node at {self.base_url} ended {what} without an answer")

    # -- channels --------------------------------------------------------------------

    def check_channels(self, channel: str) -> None:
        """Nothing to check here: the node says whether it belongs to `channel`."""

    def upload_to_channel(
        self, uri: ContentUri, channel: str, progress: Optional[Progress] = None
    ) -> None:
        self._connect()
        body = {"fileKey": _file_key(uri), "channelName": channel}
        what = f"the upload of {uri} to channel {channel!r}"
        response = self._request("POST", "/channel/upload", json_body=body, stream=True, what=what)
        try:
            self._follow(response, progress, what)
        except _NodeSaidError as exc:
            raise exc.as_kachery_error() from None

    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        self._connect()
        if self.channel and self.storage.find(uri.sha1) is None:
            self._load_through_node(uri, None)  # the node fetches it from the channel first
        if self.storage.find(uri.sha1) is not None:
            return self.storage.open_range(uri.sha1, start, end)  # type: ignore[return-value]
        doc: Dict[str, Any] = {"fileKey": _file_key(uri), "startByte": start}
        if end is not None:
            doc["endByte"] = end
        response = self._request(
            "POST", "/downloadFileData", json_body=doc, stream=True, what="download"
        )
        response.raw.decode_content = True
        return _ResponseStream(response)  # type: ignore[return-value]

    # -- mutables and feeds ------------------------------------------------------------

    def mutable_get(self, key: JSON) -> Tuple[bool, JSON]:
        doc = self._post("/mutable/get", {"key": key})
        return bool(doc.get("found")), doc.get("value")

    def mutable_set(self, key: JSON, value: JSON, update: bool = True) -> None:
        self._post("/mutable/set", {"key": key, "value": value, "update": update})

    def mutable_delete(self, key: JSON) -> None:
        self._post("/mutable/delete", {"key": key})

    def create_feed(self, feed_name: Optional[str] = None) -> str:
        body = {} if feed_name is None else {"feedName": feed_name}
        return str(self._post("/feed/createFeed", body)["feedId"])

    def get_feed_id(self, feed_name: str) -> Optional[str]:
        return self._post("/feed/getFeedId", {"feedName": feed_name}).get("feedId")

    def delete_feed(self, feed_id: str) -> None:
        self._post("/feed/deleteFeed", {"feedId": feed_id})

    def append_messages(self, feed_id: str, subfeed_hash: str, messages: List[JSON]) -> None:
        self._post(
            "/feed/appendMessages",
            {"feedId": feed_id, "subfeedHash": subfeed_hash, "messages": messages},
        )

    def get_num_messages(self, feed_id: str, subfeed_hash: str) -> int:
        return int(
            self._post(
                "/feed/getNumLocalMessages", {"feedId": feed_id, "subfeedHash": subfeed_hash}
            )["numMessages"]
        )

    def watch_for_new_messages(
        self, watches: Dict[str, SubfeedWatch], wait_msec: int, max_num_messages: int = 0
    ) -> Dict[str, List[JSON]]:
        doc = {
            "subfeedWatches": {
                name: {
                    "feedId": w.feed_id,
                    "subfeedHash": w.subfeed_hash,
                    "position": w.position,
                    "channelName": w.channel_name or "*local*",
                }
                for name, w in watches.items()
            },
            "waitMsec": wait_msec,
            "maxNumMessages": max_num_messages,
        }
        return dict(self._post("/feed/watchForNewMessages", doc)["messages"])

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class _ResponseStream(io.RawIOBase):
    """A streamed HTTP body as a binary file object that reports a dropped connection."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__()
        self._response = response
        self._expected = int(response.headers.get("Content-Length", "-1"))
        self._got = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            n = self._response.raw.readinto(buffer)
        except Exception as exc:
            raise TransportError(f"the node dropped the download: {exc}") from None
        self._got += n or 0
        if not n and 0 <= self._expected != self._got:
            raise TransportError(
                f"the node sent {self._got} of {self._expected} bytes", "try again"
            )
        return n or 0

    def close(self) -> None:
        if not self.closed:
            self._response.close()
        super().close()


class _NodeSaidError(Exception):
    """An `error` message of a framed stream; `kind` is its `errorType`, when the node sent one."""

    def __init__(self, text: str, kind: Any) -> None:
        super().__init__(text)
        self.kind = kind if isinstance(kind, str) else None

    def as_kachery_error(self) -> KacheryError:
        error_class = {
            "notFound": NotFoundError,
            "integrity": IntegrityError,
            "unreachable": TransportError,
            "invalid": InvalidInputError,
        }.get(self.kind or "", KacheryError)
        return error_class(str(self))


def _frames(raw: Any) -> Iterator[Dict[str, Any]]:
    """Parse `<length>#<json>` messages from a byte stream as they arrive."""
    import json

    while True:
        digits = b""
        while True:
            c = raw.read(1)
            if not c:
                if digits:
                    raise TransportError("the node's load stream ended mid-message")
                return
            if c == b"#":
                break
            if not c.isdigit() or len(digits) > 12:
                raise TransportError("the node's load stream is malformed")
            digits += c
        length = int(digits)
        data = b""
        while len(data) < length:
            piece = raw.read(length - len(data))
            if not piece:
                raise TransportError("the node's load stream ended mid-message")
            data += piece
        message = json.loads(data)
        if isinstance(message, dict):
            yield message


def _file_key(uri: ContentUri) -> Dict[str, Any]:
    key: Dict[str, Any] = {"sha1": uri.sha1}
    if uri.manifest_sha1:
        key["manifestSha1"] = uri.manifest_sha1
    if uri.chunk_of:
        key["chunkOf"] = {
            "fileKey": {"sha1": uri.chunk_of.sha1},
            "startByte": uri.chunk_of.start,
            "endByte": uri.chunk_of.end,
        }
    return key


def _stored(doc: Dict[str, Any], size: int = -1) -> StoredObject:
    """A store's answer; `size` is -1 where the client did not know it (a stream)."""
    if not doc.get("success"):
        raise KacheryError(f"the node refused the store: {doc.get('error')}")
    return StoredObject(str(doc["sha1"]), size, doc.get("manifestSha1"))


def _error_for(response: requests.Response, base_url: str) -> KacheryError:
    reason = " ".join(response.text.split())[:500] or response.reason
    status = response.status_code
    response.close()
    if status == 403:
        return TransportError(f"the node at {base_url} refused access: {reason}")
    if status == 404:
        return NotFoundError(reason)
    if 400 <= status < 500:
        return InvalidInputError(reason)
    return TransportError(f"the node at {base_url} failed ({status}): {reason}")


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _root_cause(exc: BaseException) -> str:
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return " ".join(str(exc).split())[:200]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _str_or_none(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _group_name(path: Path) -> str:
    try:
        import grp

        return grp.getgrgid(os.stat(path).st_gid).gr_name
    except (KeyError, OSError, ImportError):
        return "the node's group"
