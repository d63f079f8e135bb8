"""`grpc`: a node reached over its gRPC API (`kachery-daemon start --grpc-port N`).

Unlike the `http` backend, nothing is shared on disk with the node: bytes travel over the
wire. Loads stream the object into a local cache, a `LocalStorage` at `storage_dir` (same
layout as any storage directory), through a staging file whose SHA-1 is checked before the
object appears, so a dropped connection never leaves a partial object. Stores stream the
bytes to the node; `link-file` asks the node to link a path that it can read.

Settings: `daemon_host`, `grpc_port`, `connect_timeout` (the first call, a probe), and
`read_timeout` (how long the node may send nothing before the call is given up, so a
stalled or dead node gives an error rather than a hang). Auth: `auth_token` when set, else
the code read fresh from the node's client-auth file (`auth_code_file`, else
`<storage_dir>/client-auth`) for every call, retried once with a newly read code when the
node refuses it (the code rotates). With `expected_node_id` set, the node must sign a fresh
nonce with that ID's key.

This module and the two it builds on (`grpc_client`: the calls, `grpc_streams`: the
streams) are the only client modules that import grpc; the registry imports this one only
when the `grpc` backend is used, so other commands start without it.

    >>> transport = GrpcDaemonTransport.from_config(resolve_config())   # doctest: +SKIP
    >>> transport.load_file(parse_uri("sha1://..."))                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from kachery_core.backend.base import JSON, Backend, NodeInfo, SubfeedWatch
from kachery_core.content.hashing import Progress
from kachery_core.content.uri import ContentUri
from kachery_core.errors import (
    IntegrityError,
    NotFoundError,
    TransportError,
    UnsupportedOperation,
)
from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api.file_keys import to_pb
from kachery_core.protocol.address import host_port
from kachery_core.protocol.json_values import json_text
from kachery_core.settings.config import Config
from kachery_core.store.assembly import assemble_fetching_missing, has_some_chunks
from kachery_core.store.base import StoredObject
from kachery_core.store.layout import CLIENT_AUTH_FILE
from kachery_core.store.local import LocalStorage, open_input_file

from .grpc_client import NodeGrpc
from .grpc_streams import ChunkStream, data_chunks
from .node_session import NodeSession

SEND_BLOCK = 2 << 20
"""Bytes per message of a store."""
WRITES_AHEAD = 1
"""Received messages that may wait for the hashing/writing thread during a load."""


class GrpcDaemonTransport(Backend):
    name = "grpc"
    unsupported_hint = None
    parallel_transfers = 4
    """Batches run `load_file`/`store_file` on this many threads, all over the one channel
    (HTTP/2 streams side by side; a gRPC channel is thread-safe, and `NodeGrpc.connect`
    opens it once). As for HTTP (http_client.PARALLEL_TRANSFERS): enough to overlap the
    node's work with the client's hashing and writing, no more."""

    def __init__(self, config: Config) -> None:
        host, port = config.daemon_host, config.grpc_port
        self.address = host_port(host, port)
        self.url = f"grpc://{self.address}"
        self.connect_timeout = config.connect_timeout
        self.read_timeout = config.read_timeout
        self.storage = LocalStorage(
            config.storage_dir,
            config.temp_dir,
            config.keep_temp_files,
            config.fsync,
            config.max_cache_size,
            config.gc_grace_seconds,
        )
        self._config = config
        session = NodeSession(
            config,
            self.url,
            lambda: config.auth_code_file or config.storage_dir / CLIENT_AUTH_FILE,
            "set KACHERY_AUTH_CODE_FILE to the node's client-auth file, "
            "or KACHERY_AUTH_TOKEN to a token from `kachery-daemon token create`",
        )
        self.node = NodeGrpc(
            self.address,
            session,
            self.connect_timeout,
            self.read_timeout,
            f"start one with `kachery-daemon start --grpc-port {config.grpc_port}`, "
            "or set KACHERY_DAEMON_HOST/KACHERY_GRPC_PORT to where one listens",
        )

    @classmethod
    def from_config(cls, config: Config) -> GrpcDaemonTransport:
        return cls(config)

    def local_store(self) -> LocalStorage:
        """The cache loads stream into (nothing is shared on disk with the node)."""
        return self.storage

    # -- node ------------------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        answer = self.node.connect()
        details = {"node storage dir": answer.storage_dir}
        if answer.label:
            details["node label"] = answer.label
        return NodeInfo(
            self.name,
            answer.node_id,
            str(self.storage.root),
            answer.daemon_version,
            self.url,
            details,
        )

    # -- files -----------------------------------------------------------------------

    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        path = self.storage.find(uri.sha1)
        if path is None and self._from_cached_chunks(uri, progress):
            path = self.storage.find(uri.sha1)
        if path is None:
            try:
                self._download(uri, progress)
            except NotFoundError:
                if self._config.channel:  # never silently ignore a channel the user named
                    raise UnsupportedOperation(
                        self.name,
                        f"loading from channel {self._config.channel!r} ({uri} is not on the node)",
                        "channels work through the node's HTTP API: use --backend http or remote",
                    ) from None
                raise
            path = self.storage.require(uri.sha1)
        return str(path)

    def _from_cached_chunks(self, uri: ContentUri, progress: Optional[Progress]) -> bool:
        """When a lazy read left some chunks here, fetch only the others and join them."""
        if uri.manifest_sha1 is None or not self.storage.has(uri.manifest_sha1):
            return False
        manifest = self.storage.load_manifest(uri.manifest_sha1)
        if manifest.sha1 != uri.sha1 or not has_some_chunks(self.storage, manifest):
            return False

        def fetch(start: int, end: int) -> BinaryIO:
            return self.open_range(uri, start, end)

        return assemble_fetching_missing(self.storage, uri, manifest, fetch, progress) is not None

    def _download(self, uri: ContentUri, progress: Optional[Progress]) -> None:
        """Stream the object into the cache; it appears only once its SHA-1 checks out.

        Each message's data is a view into the bytes grpc received (no protobuf copies).
        Hashing and writing (`ObjectWriter.write`) run on a worker thread while the next
        message arrives; at most `WRITES_AHEAD` messages wait for it, so memory stays flat.
        Bytes past the size the node announced are refused before they are written.
        """
        # With a manifest in the URI the node has it: no need to hash chunks again here.
        writer = self.storage.object_writer(manifest=uri.manifest_sha1 is None)
        try:
            total: Optional[int] = None
            done = 0
            messages = self.node.receive("Load", to_pb(uri), f"the load of {uri}", str(uri), True)
            pool: Optional[ThreadPoolExecutor] = None  # only for objects of several messages
            queued: Deque[Future[None]] = deque()
            try:
                for data, size in data_chunks(messages, self.url):
                    if total is None:
                        total = size
                    if not len(data):
                        continue
                    done += len(data)
                    if done > total:
                        raise TransportError(
                            f"the node at {self.url} sent more than the {total} bytes of {uri}",
                            "the node is faulty or hostile; nothing was stored",
                        )
                    if pool is None and done == total:
                        writer.write(data)  # the whole object in one message: no thread
                    else:
                        if pool is None:
                            pool = ThreadPoolExecutor(1, thread_name_prefix="kachery-grpc-write")
                        queued.append(pool.submit(writer.write, data))
                    if len(queued) > WRITES_AHEAD:
                        queued.popleft().result()
                    if progress is not None:
                        progress(done)
                while queued:
                    queued.popleft().result()
            finally:
                if pool is not None:
                    pool.shutdown(wait=True)  # no write may follow the abort below
            if done != total:
                raise TransportError(
                    f"the node at {self.url} sent {done} of {total} bytes of {uri}", "try again"
                )
            try:
                writer.commit(expected_sha1=uri.sha1)
            except IntegrityError as exc:
                raise IntegrityError(
                    f"{uri} from the {self.name} backend ({self.url}): {exc.message}", exc.hint
                ) from None
        finally:
            writer.abort()  # nothing once committed; otherwise the staging file goes
        if uri.manifest_sha1 is not None and not self.storage.has(uri.manifest_sha1):
            # the manifest, fetched (small) rather than recomputed (a second pass)
            with contextlib.suppress(NotFoundError):
                self._download(ContentUri(uri.manifest_sha1), None)

    def lazy_storages(self) -> Tuple[Optional[LocalStorage], Optional[LocalStorage]]:
        """Chunks come over the channel (`ReadRange`) into the client's cache."""
        return None, self.storage

    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        if self._config.channel and self.storage.find(uri.sha1) is None:
            self.load_file(uri)  # so that a channel named for a missing file is an error
        if self.storage.find(uri.sha1) is not None:
            return self.storage.open_range(uri.sha1, start, end)  # type: ignore[return-value]
        request = pb.RangeRequest(file_key=to_pb(uri), start=start)
        if end is not None:
            request.end = end
        messages = self.node.receive("ReadRange", request, f"the read of {uri}", str(uri), True)
        return ChunkStream(data_chunks(messages, self.url), self.url)  # type: ignore[return-value]

    def store_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        absolute = Path(os.path.abspath(path))
        with open_input_file(absolute):
            pass  # the user's own checks first: missing, directory, unreadable

        def blocks() -> Iterator[bytes]:
            with open_input_file(absolute) as (source, _):
                yield from iter(lambda: source.read(SEND_BLOCK), b"")

        return self._store(blocks, replayable=True, progress=progress)

    def store_stream(self, stream: BinaryIO, progress: Optional[Progress] = None) -> StoredObject:
        seekable = _seekable(stream)
        start = stream.tell() if seekable else 0

        def blocks() -> Iterator[bytes]:
            if seekable:
                stream.seek(start)  # a retry sends the same bytes again
            yield from iter(lambda: stream.read(SEND_BLOCK), b"")

        return self._store(blocks, replayable=seekable, progress=progress)

    def _store(
        self,
        blocks: Callable[[], Iterator[bytes]],
        replayable: bool,
        progress: Optional[Progress],
    ) -> StoredObject:
        """Send the blocks as a request stream; the node stores them like any upload."""
        reply = self.node.send("Store", blocks, replayable, progress, "the store")
        return StoredObject(reply.sha1, reply.size, reply.manifest_sha1 or None)

    def link_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        self.node.session.check_may_link(self.name)
        real = Path(os.path.realpath(path))
        with open_input_file(real) as (_, st):
            pass
        request = pb.LinkRequest(path=str(real), size=st.st_size, mtime=st.st_mtime)
        reply = self.node.call("Link", request, "the link")
        return StoredObject(reply.sha1, reply.size, reply.manifest_sha1 or None)

    # -- mutables and feeds ------------------------------------------------------------

    def mutable_get(self, key: JSON) -> Tuple[bool, JSON]:
        reply = self.node.call(
            "GetMutable", pb.MutableKey(key_json=json_text(key, "mutable key")), "mutable get"
        )
        return reply.found, json.loads(reply.value_json) if reply.found else None

    def mutable_set(self, key: JSON, value: JSON, update: bool = True) -> None:
        request = pb.SetMutableRequest(
            key_json=json_text(key, "mutable key"), value_json=json_text(value, "mutable value")
        )
        request.update = update
        self.node.call("SetMutable", request, "mutable set")

    def mutable_delete(self, key: JSON) -> None:
        self.node.call(
            "DeleteMutable", pb.MutableKey(key_json=json_text(key, "mutable key")), "mutable delete"
        )

    def create_feed(self, feed_name: Optional[str] = None) -> str:
        request = pb.FeedName() if feed_name is None else pb.FeedName(feed_name=feed_name)
        return str(self.node.call("CreateFeed", request, "create feed").feed_id)

    def get_feed_id(self, feed_name: str) -> Optional[str]:
        reply = self.node.call("GetFeedId", pb.FeedName(feed_name=feed_name), "get feed id")
        return reply.feed_id or None

    def delete_feed(self, feed_id: str) -> None:
        self.node.call("DeleteFeed", pb.FeedId(feed_id=feed_id), "delete feed")

    def append_messages(self, feed_id: str, subfeed_hash: str, messages: List[JSON]) -> None:
        request = pb.AppendMessagesRequest(
            subfeed=pb.Subfeed(feed_id=feed_id, subfeed_hash=subfeed_hash),
            messages_json=[json_text(m, "feed message") for m in messages],
        )
        self.node.call("AppendMessages", request, "append messages")

    def get_num_messages(self, feed_id: str, subfeed_hash: str) -> int:
        request = pb.Subfeed(feed_id=feed_id, subfeed_hash=subfeed_hash)
        return int(self.node.call("GetNumMessages", request, "count messages").num_messages)

    def watch_for_new_messages(
        self, watches: Dict[str, SubfeedWatch], wait_msec: int, max_num_messages: int = 0
    ) -> Dict[str, List[JSON]]:
        request = pb.WatchRequest(wait_msec=wait_msec, max_num_messages=max_num_messages)
        for name, w in watches.items():
            entry = request.watches[name]
            entry.subfeed.feed_id = w.feed_id
            entry.subfeed.subfeed_hash = w.subfeed_hash
            entry.position = w.position
        timeout = wait_msec / 1000.0 + self.read_timeout
        reply = self.node.call("WatchForNewMessages", request, "watch feeds", timeout)
        return {
            name: [json.loads(text) for text in found.messages_json]
            for name, found in reply.messages.items()
        }

    def close(self) -> None:
        self.node.close()


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False
