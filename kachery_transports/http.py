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

import os
import threading
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple

from kachery_core.backend.base import JSON, Backend, NodeInfo, SubfeedWatch
from kachery_core.backend.batch import BatchProgress
from kachery_core.content.hashing import Progress
from kachery_core.content.uri import ContentUri
from kachery_core.errors import (
    InvalidInputError,
    KacheryError,
    NodeIdMismatchError,
    NotFoundError,
    TransportError,
)
from kachery_core.protocol.address import url_host
from kachery_core.protocol.json_values import json_text
from kachery_core.protocol.probe import (
    UNREADABLE,
    ProbeAnswer,
    StorageReach,
    Tls,
    current_user,
    probe_node,
    storage_reach,
)
from kachery_core.protocol.wire import file_key
from kachery_core.settings.config import Config
from kachery_core.store.base import StoredObject
from kachery_core.store.local import LocalStorage, open_input_file

from .http_client import (
    PARALLEL_TRANSFERS,
    STREAM_BLOCK,
    NodeHttp,
    ResponseStream,
    UploadBody,
    stored_object,
)
from .node_session import NodeSession


class HttpDaemonTransport(Backend):
    """Not a `StorageBackedTransport`, though it reads a storage directory too: an object
    missing there is the node's to load (from a channel), never assembled here from its
    pieces, which would write into the node's own directory; so nothing of that class's
    loading applies."""

    name = "http"
    parallel_transfers = PARALLEL_TRANSFERS
    """Batches (store-file -r, load-file -r) run on this many threads over one connection
    pool: safe, since the session, the probe and credentials are (see http_client.py)."""
    unsupported_hint = None
    no_node_hint = (
        "start one with `kachery-daemon start`, or unset --backend/KACHERY_BACKEND "
        "to use the embedded storage"
    )

    storage: LocalStorage
    """Set on connecting: where objects are read (see `_attach_storage`)."""

    def __init__(self, config: Config) -> None:
        self.host = config.daemon_host
        self.port = config.daemon_port
        scheme = "https" if config.daemon_tls else "http"
        self.base_url = f"{scheme}://{url_host(self.host)}:{self.port}"
        self._tls = Tls.from_settings(config.daemon_tls, config.tls_ca_file)
        self._storage_override = config.storage_dir if config.is_set("storage_dir") else None
        self._config = config
        self.timeout = (config.connect_timeout, config.read_timeout)
        self.channel = config.channel
        self.channel_timeout = config.channel_timeout
        self._probe: Optional[ProbeAnswer] = None
        self._connecting = threading.Lock()
        self.node_session = NodeSession(config, self.base_url, self._auth_code_file)
        self.batch_store_route: Optional[bool] = None
        """Whether the node has `/storeFiles` and `/storeLocalFiles` (None: not asked yet)."""
        self.http = NodeHttp(self.base_url, self.node_session, self.timeout, self._tls)

    @classmethod
    def from_config(cls, config: Config) -> HttpDaemonTransport:
        return cls(config)

    # -- connecting ------------------------------------------------------------------

    def _connect(self) -> ProbeAnswer:
        if self._probe is not None:
            return self._probe
        with self._connecting:  # one probe, whichever thread of a batch comes first
            if self._probe is None:
                answer = self._identify()
                self.storage = self._attach_storage(answer)
                self._probe = answer
            return self._probe

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
        self.node_session.check_identity(answer.node_id, self.http.signature_for)
        return answer

    def _attach_storage(self, answer: ProbeAnswer) -> LocalStorage:
        """The node's storage directory, which this backend reads directly."""
        root = self._storage_override or Path(answer.storage_dir)
        reach = storage_reach(root, answer.node_id)
        if reach.problem is not None:
            raise self._storage_error(reach)
        # Only read here (the node writes its own storage), so fsync changes nothing; it is
        # passed so that every backend builds its LocalStorage from the same settings.
        config = self._config
        return LocalStorage(
            root,
            config.temp_dir,
            config.keep_temp_files,
            config.fsync,
            grace_period=config.gc_grace_seconds,
        )

    def _storage_error(self, reach: StorageReach) -> KacheryError:
        """Why the storage directory cannot be read in place, naming the real cause."""
        if self._storage_override is None:
            where = "reported by the node"
        else:
            source = self._config.source("storage_dir")
            where = source[len("environment ") :] if source.startswith("environment ") else source
        text = f"storage directory {reach.root} ({where}) {reach.describe()}"
        if reach.problem == UNREADABLE:
            return TransportError(
                f"{text}: the {self.name} backend reads the objects of the node at "
                f"{self.base_url} in place",
                "use backend remote, which brings files over the connection (unset "
                "--backend/KACHERY_BACKEND and it is chosen), or ask the node's admin to add "
                f"user {current_user()} to the directory's group",
            )
        return NodeIdMismatchError(
            f"{text}, but the node at {self.base_url} is {reach.node_id}",
            "point KACHERY_STORAGE_DIR at that node's storage directory (or unset it)",
        )

    def _auth_code_file(self) -> Path:
        """Where the node's client-auth code is read (when no access token is set)."""
        return self._config.auth_code_file or self.storage.layout.client_auth_path

    def _post(self, path: str, doc: Dict[str, Any]) -> Any:
        self._connect()
        return self.http.post_json(path, doc)

    # -- node ------------------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        answer = self._connect()
        return NodeInfo(
            self.name, answer.node_id, str(self.storage.root), answer.daemon_version, self.base_url
        )

    def describe_location(self) -> str:
        return f"the node at {self.base_url} (storage {self.storage.root})"

    def local_store(self) -> LocalStorage:
        """The node's storage directory (or, for `remote`, the cache or shared mount)."""
        self._connect()
        return self.storage

    # -- files -----------------------------------------------------------------------

    def store_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        self._connect()
        absolute = os.path.abspath(path)
        with open_input_file(Path(absolute)) as (_, st):
            pass  # the user's own checks first: missing, directory, unreadable
        if self.node_reads_local_paths:
            try:
                doc = self.http.post_json("/storeFile", {"localFilePath": absolute}, "store")
            except InvalidInputError:
                pass  # the node cannot read it (another user, another mount): send the bytes
            else:
                return _reported(stored_object(doc, st.st_size), progress)
        return self._send_file(absolute, st.st_size, progress)

    def store_files(
        self, paths: Sequence[str], progress: Optional[BatchProgress] = None
    ) -> List[StoredObject]:
        """Small files in batch requests, by path or by bytes (see batch_upload.py)."""
        self._connect()
        from .batch_upload import store_files

        return store_files(self, paths, progress if progress is not None else BatchProgress(None))

    @property
    def node_reads_local_paths(self) -> bool:
        """True when the node may read a path on this machine for us: it means the same file
        there, and we hold the client-auth code (a token never sends paths: SECURITY.md)."""
        return self.node_session.may_send_paths

    def _send_file(self, path: str, size: int, progress: Optional[Progress]) -> StoredObject:
        opened: List[UploadBody] = []

        def body() -> UploadBody:
            opened.append(UploadBody(open(path, "rb"), progress))  # noqa: SIM115
            return opened[-1]

        try:
            response = self.http.request(
                "POST", "/store", body=body, headers={"Content-Length": str(size)}, what="store"
            )
        finally:
            for upload in opened:
                upload.close()
        return stored_object(response.json(), size)

    def store_stream(self, stream: BinaryIO, progress: Optional[Progress] = None) -> StoredObject:
        self._connect()
        seekable = _seekable(stream)
        start = stream.tell() if seekable else 0

        def blocks() -> Iterator[bytes]:
            if seekable:
                stream.seek(start)  # a retry sends the same bytes again
            sent = 0
            while True:
                block = stream.read(STREAM_BLOCK)
                if not block:
                    return
                sent += len(block)
                if progress is not None:
                    progress(sent)
                yield block

        response = self.http.request(
            "POST", "/store", body=blocks, what="store", replayable=seekable
        )
        return stored_object(response.json())

    def link_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        self._connect()
        self.node_session.check_may_link(self.name)
        real = os.path.realpath(path)
        with open_input_file(Path(real)) as (_, st):
            pass
        doc = {"localFilePath": real, "size": st.st_size, "mtime": st.st_mtime}
        answer = self.http.post_json("/linkFile", doc, "link")
        return _reported(stored_object(answer, st.st_size), progress)

    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        self._connect()
        path = self.storage.find(uri.sha1)
        return str(path) if path is not None else self._load_through_node(uri, progress)

    def _load_through_node(self, uri: ContentUri, progress: Optional[Progress]) -> str:
        self._node_loads(uri, progress)
        # The object's place in the node's storage (checked to be that node's), not the
        # path the answer names: an answer altered on the way could name any file.
        path = self.storage.find(uri.sha1)
        if path is None:
            raise TransportError(
                f"{self.describe_location()} reported loading {uri}, "
                f"but it is not in {self.storage.root}",
                "is KACHERY_STORAGE_DIR the node's own storage directory?",
            )
        return str(path)

    def _node_loads(self, uri: ContentUri, progress: Optional[Progress]) -> None:
        """Have the node make the object present in its storage (from a channel if need be)."""
        body: Dict[str, Any] = {"fileKey": file_key(uri)}
        if self.channel:  # on a miss the node fetches it through this channel
            body.update(channelName=self.channel, channelTimeout=self.channel_timeout)
        response = self.http.request("POST", "/loadFile", json_body=body, stream=True, what="load")

        def plain_miss(text: str) -> NotFoundError:
            """An untyped error: a miss, from a node that knows nothing of channels."""
            return NotFoundError(f"{uri} not found by {self.describe_location()}: {text}")

        self.http.follow(response, progress, f"the load of {uri}", plain_miss)

    # -- channels --------------------------------------------------------------------

    def check_channels(self, channel: str) -> None:
        """Nothing to check here: the node says whether it belongs to `channel`."""

    def upload_to_channel(
        self, uri: ContentUri, channel: str, progress: Optional[Progress] = None
    ) -> None:
        self._connect()
        body = {"fileKey": file_key(uri), "channelName": channel}
        what = f"the upload of {uri} to channel {channel!r}"
        response = self.http.request(
            "POST", "/channel/upload", json_body=body, stream=True, what=what
        )
        self.http.follow(response, progress, what)

    def lazy_storages(self) -> Tuple[Optional[LocalStorage], Optional[LocalStorage]]:
        """The node's storage, read in place; a missing object is loaded by the node."""
        self._connect()
        return self.storage, None

    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        self._connect()
        if self.channel and self.storage.find(uri.sha1) is None:
            self._load_through_node(uri, None)  # the node fetches it from the channel first
        if self.storage.find(uri.sha1) is not None:
            return self.storage.open_range(uri.sha1, start, end)  # type: ignore[return-value]
        return self._range_from_node(uri, start, end)

    def _range_from_node(self, uri: ContentUri, start: int, end: Optional[int]) -> BinaryIO:
        """Bytes [start, end) streamed by the node (`/downloadFileData`)."""
        doc: Dict[str, Any] = {"fileKey": file_key(uri), "startByte": start}
        if end is not None:
            doc["endByte"] = end
        response = self.http.request(
            "POST", "/downloadFileData", json_body=doc, stream=True, what="download"
        )
        response.raw.decode_content = True
        stream = ResponseStream(response, self.base_url, f"the read of {uri}", self.timeout[1])
        return stream  # type: ignore[return-value]

    # -- mutables and feeds ------------------------------------------------------------

    def mutable_get(self, key: JSON) -> Tuple[bool, JSON]:
        json_text(key, "mutable key")  # the same error as every backend's, before sending
        doc = self._post("/mutable/get", {"key": key})
        return bool(doc.get("found")), doc.get("value")

    def mutable_set(self, key: JSON, value: JSON, update: bool = True) -> None:
        json_text(key, "mutable key")
        json_text(value, "mutable value")
        self._post("/mutable/set", {"key": key, "value": value, "update": update})

    def mutable_delete(self, key: JSON) -> None:
        json_text(key, "mutable key")
        self._post("/mutable/delete", {"key": key})

    def create_feed(self, feed_name: Optional[str] = None) -> str:
        body = {} if feed_name is None else {"feedName": feed_name}
        return str(self._post("/feed/createFeed", body)["feedId"])

    def get_feed_id(self, feed_name: str) -> Optional[str]:
        return self._post("/feed/getFeedId", {"feedName": feed_name}).get("feedId")

    def delete_feed(self, feed_id: str) -> None:
        self._post("/feed/deleteFeed", {"feedId": feed_id})

    def append_messages(self, feed_id: str, subfeed_hash: str, messages: List[JSON]) -> None:
        for message in messages:
            json_text(message, "feed message")
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
        self.http.close()


def _reported(stored: StoredObject, progress: Optional[Progress]) -> StoredObject:
    """A store the node did from a path: all of it done at once, as far as progress goes."""
    if progress is not None and stored.size >= 0:
        progress(stored.size)
    return stored


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False
