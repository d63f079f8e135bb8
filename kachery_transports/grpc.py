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

This is the only client module that imports grpc; the registry imports it only when the
`grpc` backend is used, so other commands start without it.

    >>> transport = GrpcDaemonTransport.from_config(resolve_config())   # doctest: +SKIP
    >>> transport.load_file(parse_uri("sha1://..."))                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Callable, Deque, Dict, Iterator, List, Optional, Tuple

import grpc

from kachery_core.config import Config
from kachery_core.errors import (
    InvalidInputError,
    KacheryError,
    NodeIdMismatchError,
    NotFoundError,
    TransportError,
    UnsupportedOperation,
)
from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc
from kachery_core.grpc_api.tuning import CHANNEL_OPTIONS, keep_freed_buffers
from kachery_core.hashing import Progress
from kachery_core.local_storage import LocalStorage, open_input_file
from kachery_core.node_key import check_node_id, verify_signature
from kachery_core.storage import StoredObject
from kachery_core.transport import JSON, DaemonTransport, NodeInfo, SubfeedWatch
from kachery_core.uri import ContentUri

AUTH_METADATA = "kachery-client-auth-code"
SEND_BLOCK = 2 << 20
"""Bytes per message of a store."""
WRITES_AHEAD = 2
"""Received messages that may wait for the hashing/writing thread during a load."""
_REFUSED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
_BAD_INPUT = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
)


class GrpcDaemonTransport(DaemonTransport):
    name = "grpc"
    unsupported_hint = None

    def __init__(self, config: Config) -> None:
        host, port = config.daemon_host, config.grpc_port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.url = f"grpc://{self.address}"
        self.connect_timeout = float(config.connect_timeout)
        self.read_timeout = float(config.read_timeout)
        self.cache = LocalStorage(
            Path(config.storage_dir), config.temp_dir, config.keep_temp_files, config.fsync
        )
        self._config = config
        self._expected = config.expected_node_id
        self._expected_source = config.source("expected_node_id")
        self._channel: Any = None
        self._stub: Any = None
        self._probe: Optional[pb.ProbeReply] = None

    @classmethod
    def from_config(cls, config: Config) -> GrpcDaemonTransport:
        return cls(config)

    # -- connecting ------------------------------------------------------------------

    def _connect(self) -> pb.ProbeReply:
        """Probe once per transport: is a node there, and is it the expected one?"""
        if self._probe is not None:
            return self._probe
        if self._channel is None:
            keep_freed_buffers()
            self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
            self._stub = pb_grpc.KacheryStub(self._channel)
        nonce = os.urandom(16).hex()
        try:
            answer = self._stub.Probe(pb.ProbeRequest(nonce=nonce), timeout=self.connect_timeout)
        except grpc.RpcError as exc:
            code = _code(exc)
            if code == grpc.StatusCode.UNAVAILABLE:
                raise TransportError(
                    f"no kachery node answers at {self.url}",
                    f"start one with `kachery-daemon start --grpc-port {self._config.grpc_port}`, "
                    "or set KACHERY_DAEMON_HOST/KACHERY_GRPC_PORT to where one listens",
                ) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TransportError(
                    f"the node at {self.url} did not answer within {self.connect_timeout:g} s",
                    "is it running and reachable? (KACHERY_CONNECT_TIMEOUT sets the wait)",
                ) from None
            raise self._error(exc, "the probe") from None
        where = f"the node at {self.url}"
        check_node_id(self._expected, answer.node_id, where, self._expected_source)
        if self._expected and not (
            answer.signature
            and verify_signature(
                self._expected, f"kachery-probe:{nonce}".encode(), answer.signature
            )
        ):
            raise NodeIdMismatchError(
                f"{where} could not prove it is {self._expected} ({self._expected_source})",
                "its probe signature does not verify: connect to the right node",
            )
        self._probe = answer
        return answer

    def _credential(self) -> Tuple[str, str]:
        """(value for the auth metadata, where it came from), read fresh for each call."""
        token = self._config.auth_token
        if token:
            return token, f"the access token ({self._config.source('auth_token')})"
        path = Path(self._config.auth_code_file or Path(self._config.storage_dir) / "client-auth")
        try:
            code = path.read_text().strip()
        except FileNotFoundError:
            raise TransportError(
                f"no client-auth file at {path}",
                "set KACHERY_AUTH_CODE_FILE to the node's client-auth file, "
                "or KACHERY_AUTH_TOKEN to a token from `kachery-daemon token create`",
            ) from None
        except OSError as exc:
            raise TransportError(
                f"cannot read {path}: {exc.strerror}",
                "ask to be added to the group that may read it, or use an access token",
            ) from None
        if not code:
            raise TransportError(f"the client-auth file {path} is empty", "is the node running?")
        return code, f"the code in {path}"

    def _metadata(self) -> Tuple[Tuple[str, str], ...]:
        return ((AUTH_METADATA, self._credential()[0]),)

    def _may_retry(self, exc: Exception) -> bool:
        """A refused auth code may have just rotated: worth one more try with a fresh read."""
        return _code(exc) in _REFUSED and not self._config.auth_token

    def _error(
        self, exc: Exception, what: str, stalled: bool = False, subject: str = ""
    ) -> KacheryError:
        """The kachery error for a failed call, as the http backend would raise it."""
        code = _code(exc)
        details = (
            _one_line(str(exc.details() or code.name)) if hasattr(exc, "details") else code.name
        )
        if stalled:
            return TransportError(
                f"the node at {self.url} sent nothing for {self.read_timeout:g} s during {what}",
                "is it overloaded or stuck? nothing partial was kept; try again "
                "(KACHERY_READ_TIMEOUT sets the wait)",
            )
        if code == grpc.StatusCode.NOT_FOUND:
            if subject:
                return NotFoundError(f"{subject} not found by the node at {self.url}: {details}")
            return NotFoundError(details)
        if code in _BAD_INPUT:
            return InvalidInputError(details)
        if code in _REFUSED:
            try:
                source = self._credential()[1]
            except KacheryError:
                source = "the credential sent"
            return TransportError(
                f"the node at {self.url} refused access: {details}", f"sent {source}"
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return TransportError(
                f"lost the node at {self.url} during {what}",
                "is it still running? nothing partial was kept; try again",
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return TransportError(f"the node at {self.url} did not answer {what} in time")
        return TransportError(
            f"the node at {self.url} failed during {what} ({code.name}): {details}"
        )

    def _call(self, method: str, request: Any, what: str, timeout: Optional[float] = None) -> Any:
        """One unary call, retried once when the node refuses a code that may have rotated."""
        self._connect()
        rpc = getattr(self._stub, method)
        for attempt in (1, 2):
            try:
                return rpc(request, metadata=self._metadata(), timeout=timeout or self.read_timeout)
            except grpc.RpcError as exc:
                if attempt == 1 and self._may_retry(exc):
                    continue
                raise self._error(exc, what) from None
        raise AssertionError("unreachable")

    def _receive(
        self, method: str, request: Any, what: str, subject: str = ""
    ) -> Iterator[pb.DataChunk]:
        """The messages of a server stream, each within `read_timeout` of asking for it."""
        self._connect()
        for attempt in (1, 2):
            call = getattr(self._stub, method)(request, metadata=self._metadata())
            watchdog = _Watchdog(call, self.read_timeout)
            received = False
            try:
                while True:
                    watchdog.arm()
                    try:
                        chunk = next(call)
                    except StopIteration:
                        return
                    finally:
                        watchdog.disarm()  # the consumer's own pace never counts as a stall
                    received = True
                    yield chunk
            except grpc.RpcError as exc:
                if attempt == 1 and not received and self._may_retry(exc):
                    continue
                raise self._error(exc, what, watchdog.fired, subject) from None
            finally:
                watchdog.stop()
                call.cancel()  # nothing once finished; ends the stream if abandoned early

    # -- node ------------------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        answer = self._connect()
        details = {"node storage dir": answer.storage_dir}
        if answer.label:
            details["node label"] = answer.label
        return NodeInfo(
            self.name,
            answer.node_id,
            str(self.cache.root),
            answer.daemon_version,
            self.url,
            details,
        )

    # -- files -----------------------------------------------------------------------

    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        path = self.cache.find(uri.sha1)
        if path is None:
            try:
                self._download(uri, progress)
            except NotFoundError:
                if self._config.channel:  # never silently ignore a channel the user named
                    raise UnsupportedOperation(
                        self.name,
                        f"loading from channel {self._config.channel!r} ({uri} is not on the node)",
                        "channels work through the node's HTTP API: use --transport http or remote",
                    ) from None
                raise
            path = self.cache.require(uri.sha1)
        return str(path)

    def _download(self, uri: ContentUri, progress: Optional[Progress]) -> None:
        """Stream the object into the cache; it appears only once its SHA-1 checks out.

        Hashing and writing (`ObjectWriter.write`) run on a worker thread while the next
        message arrives; at most `WRITES_AHEAD` messages wait for it, so memory stays flat.
        """
        # With a manifest in the URI the node has it: no need to hash chunks again here.
        writer = self.cache.object_writer(manifest=uri.manifest_sha1 is None)
        try:
            total: Optional[int] = None
            done = 0
            with ThreadPoolExecutor(1, thread_name_prefix="kachery-grpc-write") as pool:
                queued: Deque[Future[None]] = deque()
                for chunk in self._receive("Load", _file_key(uri), f"the load of {uri}", str(uri)):
                    if total is None:
                        total = chunk.total_size
                    if chunk.data:
                        queued.append(pool.submit(writer.write, chunk.data))
                        done += len(chunk.data)
                        if len(queued) > WRITES_AHEAD:
                            queued.popleft().result()
                        if progress is not None:
                            progress(done)
                while queued:
                    queued.popleft().result()
            if done != total:
                raise TransportError(
                    f"the node at {self.url} sent {done} of {total} bytes of {uri}", "try again"
                )
            writer.commit(expected_sha1=uri.sha1)
        finally:
            writer.abort()  # nothing once committed; otherwise the staging file goes
        if uri.manifest_sha1 is not None and not self.cache.has(uri.manifest_sha1):
            # the manifest, fetched (small) rather than recomputed (a second pass)
            with contextlib.suppress(NotFoundError):
                self._download(ContentUri(uri.manifest_sha1), None)

    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        if self._config.channel and self.cache.find(uri.sha1) is None:
            self.load_file(uri)  # so that a channel named for a missing file is an error
        if self.cache.find(uri.sha1) is not None:
            return self.cache.open_range(uri.sha1, start, end)  # type: ignore[return-value]
        request = pb.RangeRequest(file_key=_file_key(uri), start=start)
        if end is not None:
            request.end = end
        chunks = self._receive("ReadRange", request, f"the read of {uri}", str(uri))
        return _ChunkStream(chunks, self.url)  # type: ignore[return-value]

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
        """Send the blocks as a client stream; the node stores them like any upload."""
        self._connect()
        for attempt in (1, 2):
            sender = _Sender(blocks(), progress)
            future = self._stub.Store.future(sender, metadata=self._metadata())
            watchdog = _Watchdog(future, self.read_timeout)
            watchdog.arm()
            sender.start(future, watchdog)
            try:
                reply = future.result()
            except (grpc.RpcError, grpc.FutureCancelledError) as exc:
                if sender.error is not None:
                    raise sender.error from None  # a local read error, as store-file shows it
                if attempt == 1 and replayable and self._may_retry(exc):
                    continue
                raise self._error(exc, "the store", watchdog.fired) from None
            finally:
                watchdog.stop()
                sender.close()
            return StoredObject(reply.sha1, reply.size, reply.manifest_sha1 or None)
        raise AssertionError("unreachable")

    def link_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        real = Path(os.path.realpath(path))
        with open_input_file(real) as (_, st):
            pass
        request = pb.LinkRequest(path=str(real), size=st.st_size, mtime=st.st_mtime)
        reply = self._call("Link", request, "the link")
        return StoredObject(reply.sha1, reply.size, reply.manifest_sha1 or None)

    # -- mutables and feeds ------------------------------------------------------------

    def mutable_get(self, key: JSON) -> Tuple[bool, JSON]:
        reply = self._call("GetMutable", pb.MutableKey(key_json=_dumps(key)), "mutable get")
        return reply.found, json.loads(reply.value_json) if reply.found else None

    def mutable_set(self, key: JSON, value: JSON, update: bool = True) -> None:
        request = pb.SetMutableRequest(key_json=_dumps(key), value_json=_dumps(value))
        request.update = update
        self._call("SetMutable", request, "mutable set")

    def mutable_delete(self, key: JSON) -> None:
        self._call("DeleteMutable", pb.MutableKey(key_json=_dumps(key)), "mutable delete")

    def create_feed(self, feed_name: Optional[str] = None) -> str:
        request = pb.FeedName() if feed_name is None else pb.FeedName(feed_name=feed_name)
        return str(self._call("CreateFeed", request, "create feed").feed_id)

    def get_feed_id(self, feed_name: str) -> Optional[str]:
        reply = self._call("GetFeedId", pb.FeedName(feed_name=feed_name), "get feed id")
        return reply.feed_id or None

    def delete_feed(self, feed_id: str) -> None:
        self._call("DeleteFeed", pb.FeedId(feed_id=feed_id), "delete feed")

    def append_messages(self, feed_id: str, subfeed_hash: str, messages: List[JSON]) -> None:
        request = pb.AppendMessagesRequest(
            subfeed=pb.Subfeed(feed_id=feed_id, subfeed_hash=subfeed_hash),
            messages_json=[_dumps(m) for m in messages],
        )
        self._call("AppendMessages", request, "append messages")

    def get_num_messages(self, feed_id: str, subfeed_hash: str) -> int:
        request = pb.Subfeed(feed_id=feed_id, subfeed_hash=subfeed_hash)
        return int(self._call("GetNumMessages", request, "count messages").num_messages)

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
        reply = self._call("WatchForNewMessages", request, "watch feeds", timeout)
        return {
            name: [json.loads(text) for text in found.messages_json]
            for name, found in reply.messages.items()
        }

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None
            self._probe = None


class _Watchdog:
    """Cancels a call when the node sends nothing for `seconds` while we wait for it.

    gRPC has no per-message timeout, and a whole-call deadline would cut off large
    transfers, so a small thread watches the time since the call was last `arm`ed.
    """

    def __init__(self, call: Any, seconds: float) -> None:
        self._call = call
        self._seconds = seconds
        self._armed_at: Optional[float] = None
        self._done = threading.Event()
        self.fired = False
        threading.Thread(target=self._watch, name="kachery-grpc-watchdog", daemon=True).start()

    def arm(self) -> None:
        self._armed_at = time.monotonic()

    def disarm(self) -> None:
        self._armed_at = None

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self._seconds / 4)):
            armed = self._armed_at
            if armed is not None and time.monotonic() - armed >= self._seconds:
                self.fired = True
                self._call.cancel()
                return


class _Sender:
    """The request stream of a store: grpc pulls the blocks on its own thread.

    Each pull means the previous block was taken, so it re-arms the watchdog. A local read
    error cancels the call (the node then discards the upload) instead of ending the
    stream, which would make the node store a truncated file.
    """

    def __init__(self, blocks: Iterator[bytes], progress: Optional[Progress]) -> None:
        self._blocks = blocks
        self._progress = progress
        self._started = threading.Event()
        self._future: Any = None
        self._watchdog: Optional[_Watchdog] = None
        self._reading = threading.Lock()
        self._closed = False
        self.error: Optional[Exception] = None
        self.sent = 0

    def start(self, future: Any, watchdog: _Watchdog) -> None:
        self._future, self._watchdog = future, watchdog
        self._started.set()

    def close(self, wait_seconds: float = 5.0) -> None:
        """Stop reading, waiting for a read in progress on grpc's thread to end.

        That thread is a daemon: were the process to exit while it reads stdin, holding the
        stream's lock, the interpreter would abort at shutdown instead of exiting cleanly.
        """
        if self._reading.acquire(timeout=wait_seconds):
            self._closed = True
            self._reading.release()

    def __iter__(self) -> _Sender:
        return self

    def __next__(self) -> pb.DataChunk:
        self._started.wait()
        assert self._watchdog is not None
        self._watchdog.arm()
        with self._reading:
            if self._closed:
                raise StopIteration
            try:
                data = next(self._blocks)
            except StopIteration:
                raise
            except Exception as exc:
                self.error = exc
                self._future.cancel()
                raise StopIteration from None
        self.sent += len(data)
        if self._progress is not None:
            self._progress(self.sent)
        return pb.DataChunk(data=data)


class _ChunkStream(io.RawIOBase):
    """The messages of a ReadRange call as a readable binary stream."""

    def __init__(self, chunks: Iterator[pb.DataChunk], url: str) -> None:
        super().__init__()
        self._chunks = chunks
        self._url = url
        first = next(chunks, None)  # errors (not found, bad range) surface on open
        if first is None:
            raise TransportError(f"the node at {url} ended a read without any answer")
        self._total = first.total_size
        self._got = len(first.data)
        self._view = memoryview(first.data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not len(self._view):
            chunk = next(self._chunks, None)
            if chunk is None:
                if self._got != self._total:
                    raise TransportError(
                        f"the node at {self._url} sent {self._got} of {self._total} bytes",
                        "try again",
                    )
                return 0
            self._got += len(chunk.data)
            self._view = memoryview(chunk.data)
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def readall(self) -> bytes:
        parts = [bytes(self._view)]
        self._view = memoryview(b"")
        while True:
            block = self.read(1 << 20)
            if not block:
                return b"".join(parts)
            parts.append(block)

    def close(self) -> None:
        if not self.closed:
            self._chunks.close()  # type: ignore[attr-defined]
        super().close()


def _file_key(uri: ContentUri) -> pb.FileKey:
    key = pb.FileKey(sha1=uri.sha1, manifest_sha1=uri.manifest_sha1 or "")
    if uri.chunk_of is not None:
        key.chunk_of.sha1 = uri.chunk_of.sha1
        key.chunk_of.start = uri.chunk_of.start
        key.chunk_of.end = uri.chunk_of.end
    return key


def _dumps(value: JSON) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"not a JSON value: {exc}", "use dicts, lists, str, numbers"
        ) from None


def _code(exc: Exception) -> Any:
    if isinstance(exc, grpc.FutureCancelledError):
        return grpc.StatusCode.CANCELLED
    code = getattr(exc, "code", None)
    return code() if callable(code) else grpc.StatusCode.UNKNOWN


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False
