"""The node's gRPC API (`kachery_core/grpc_api/kachery.proto`), served beside HTTP.

`kachery-daemon start --grpc-port N` runs it with `grpc.aio` in the node's own asyncio loop,
on the same `Node` as the HTTP API: one storage directory, one authorizer, one set of
mutables and feeds, and one wake-up for feed watches whichever API appended.

Like the HTTP routes, uploads are hashed and written through `LocalStorage.object_writer`
on a worker thread (staging file, atomic rename), and downloads are read from the object
file block by block, so memory stays flat whatever the size. Every RPC but Probe needs the
`kachery-client-auth-code` metadata, checked by the node's `Authorizer` exactly as the HTTP
header is. Errors are a status code and a one-line message: bad input INVALID_ARGUMENT,
missing object NOT_FOUND, no credential UNAUTHENTICATED, a wrong one PERMISSION_DENIED; an
unexpected exception is logged to stderr and answered INTERNAL, one line, no traceback.

This module imports grpc, so only the node imports it, and only when `--grpc-port` is given.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, TypeVar

import grpc
from grpc import aio

from kachery_core import __version__
from kachery_core.errors import ConfigError, KacheryError, NotFoundError
from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc
from kachery_core.grpc_api.tuning import CHANNEL_OPTIONS, keep_freed_buffers
from kachery_core.uri import ChunkOf, ContentUri, check_sha1

from .auth import AUTH_HEADER
from .feed_routes import MAX_WAIT_MSEC, Watch, check_subfeed_hash, wait_for_messages
from .feeds import check_feed_id
from .http_util import BadRequest
from .server import PROBE_NONCE, Node, link_unchanged

AUTH_METADATA = AUTH_HEADER.lower()
"""gRPC metadata keys are lowercase; the value is the same as the HTTP header's."""
BLOCK = 2 << 20
"""Bytes per DataChunk sent: well under the 4 MiB default message limit of any client."""
MIN_WRITE = 1 << 20
"""Uploaded pieces are gathered to at least this size before each trip to a worker thread."""

T = TypeVar("T")
Method = Callable[..., Awaitable[Any]]


class Refused(Exception):
    """The call lacks a valid credential."""

    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


async def start_grpc_server(node: Node, host: str, port: int) -> aio.Server:
    """Serve the gRPC API of `node` on host:port; `ConfigError` when it cannot listen."""
    keep_freed_buffers()
    server = aio.server(
        options=[
            *CHANNEL_OPTIONS,
            ("grpc.so_reuseport", 0),  # a port in use is an error, as it is for HTTP
        ]
    )
    pb_grpc.add_KacheryServicer_to_server(KacheryService(node), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    _check_can_listen(host, port, address)  # grpc would log its own multi-line error first
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # newer grpcio raises where older ones returned 0
        bound = 0
    if not bound:
        raise ConfigError(
            f"cannot listen for gRPC on {address}",
            "is another node or program using that port? choose --grpc-port",
        )
    await server.start()
    return server


def _check_can_listen(host: str, port: int, address: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc's listener does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen for gRPC on {address}: {exc.strerror}",
                "is another node or program using that port? choose --grpc-port",
            ) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:1000]


async def _abort(context: aio.ServicerContext, exc: Exception) -> None:
    """End the call with the status and one-line message that fit `exc` (raises)."""
    if isinstance(exc, Refused):
        code = exc.code
    elif isinstance(exc, NotFoundError):
        code = grpc.StatusCode.NOT_FOUND
    elif isinstance(exc, (BadRequest, KacheryError)):
        code = grpc.StatusCode.INVALID_ARGUMENT
    else:
        print("kachery-daemon: error in a gRPC call:", file=sys.stderr)
        traceback.print_exc()
        await context.abort(
            grpc.StatusCode.INTERNAL,
            f"internal error ({type(exc).__name__}); see the node's log",
        )
        return
    await context.abort(code, _one_line(str(exc)))


def _unary(method: Method) -> Method:
    """An authorized call with a single answer; errors become status codes."""

    @functools.wraps(method)
    async def handler(self: KacheryService, request: Any, context: aio.ServicerContext) -> Any:
        try:
            self.authorize(context)
            return await method(self, request, context)
        except Exception as exc:
            await _abort(context, exc)

    return handler


def _streaming(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    """An authorized call that answers a stream; errors become status codes."""

    @functools.wraps(method)
    async def handler(
        self: KacheryService, request: Any, context: aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            self.authorize(context)
            async for reply in method(self, request, context):
                yield reply
        except Exception as exc:
            await _abort(context, exc)

    return handler


async def _run(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work (disk, hashing, SQLite) on a worker thread."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


class KacheryService(pb_grpc.KacheryServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    def authorize(self, context: aio.ServicerContext) -> None:
        """The same check as the HTTP header's: `Refused` unless the node accepts the code."""
        value: Optional[str] = None
        for key, item in context.invocation_metadata() or ():
            if key == AUTH_METADATA:
                value = item.decode() if isinstance(item, bytes) else str(item)
        refusal = self.node.authorizer.reason_to_refuse(value)
        if refusal is not None:
            code = (
                grpc.StatusCode.UNAUTHENTICATED if not value else grpc.StatusCode.PERMISSION_DENIED
            )
            raise Refused(code, refusal)

    # -- node -----------------------------------------------------------------------

    async def Probe(self, request: pb.ProbeRequest, context: aio.ServicerContext) -> pb.ProbeReply:
        node = self.node
        signature = ""
        if request.nonce:
            if not PROBE_NONCE.fullmatch(request.nonce):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"nonce must be 1 to 128 hex digits, not {request.nonce[:40]!r}",
                )
            signature = node.identity.sign(f"kachery-probe:{request.nonce}".encode())
        return pb.ProbeReply(
            node_id=node.identity.node_id,
            daemon_version=__version__,
            storage_dir=str(node.storage.root),
            label=node.label,
            signature=signature,
        )

    # -- files ----------------------------------------------------------------------

    @_unary
    async def Store(self, requests: AsyncIterator[pb.DataChunk], context: Any) -> pb.StoredReply:
        writer = self.node.storage.object_writer()
        try:
            pending = bytearray()
            async for chunk in requests:
                data: bytes = chunk.data
                if pending or len(data) < MIN_WRITE:
                    pending += data
                    if len(pending) < MIN_WRITE:
                        continue
                    data, pending = bytes(pending), bytearray()
                await _run(writer.write, data)
            if pending:
                await _run(writer.write, bytes(pending))
            stored = await _run(writer.commit)
        finally:
            writer.abort()  # nothing if committed; otherwise the staging file goes
        self.node.count("storedBytes", stored.size)
        self.node.count("storeRequests")
        return pb.StoredReply(
            sha1=stored.sha1, size=stored.size, manifest_sha1=stored.manifest_sha1 or ""
        )

    @_streaming
    async def Load(self, request: pb.FileKey, context: Any) -> AsyncIterator[pb.DataChunk]:
        uri = _content_uri(request)
        await _run(self.node.loader.find_path, uri)  # may assemble it from chunks
        async for chunk in self._send(uri.sha1, 0, None):
            yield chunk

    @_streaming
    async def ReadRange(
        self, request: pb.RangeRequest, context: Any
    ) -> AsyncIterator[pb.DataChunk]:
        uri = _content_uri(request.file_key)
        end = request.end if request.HasField("end") else None
        await _run(self.node.loader.find_path, uri)
        async for chunk in self._send(uri.sha1, request.start, end):
            yield chunk

    async def _send(self, sha1: str, start: int, end: Optional[int]) -> AsyncIterator[pb.DataChunk]:
        """Bytes [start, end) of an object, BLOCK by BLOCK; the first chunk says the total.

        The next block is read on a worker thread while this one is sent (disk reads never
        stall the event loop); at most two blocks are in memory.
        """
        stream = await _run(self.node.storage.open_range, sha1, start, end)
        loop = asyncio.get_running_loop()
        fd, total = stream.fileno(), stream.length

        def read(offset: int) -> asyncio.Future[bytes]:
            want = min(BLOCK, stream.offset + total - offset)
            return loop.run_in_executor(None, os.pread, fd, want, offset)

        offset, sent, first = stream.offset, 0, True
        reading = read(offset)
        try:
            while True:
                data = await reading
                if not data and sent < total:
                    raise KacheryError(f"sha1://{sha1} ended early while it was read")
                sent += len(data)
                offset += len(data)
                if sent < total:
                    reading = read(offset)
                yield pb.DataChunk(data=data, total_size=total if first else 0)
                first = False
                if sent >= total:
                    break
            self.node.count("downloadedBytes", total)
        finally:
            try:
                if not reading.done():
                    await asyncio.wait([reading])  # let the read finish before the file closes
            finally:
                stream.close()

    @_unary
    async def Link(self, request: pb.LinkRequest, context: Any) -> pb.StoredReply:
        path = Path(request.path)
        if not path.is_absolute():
            raise BadRequest(f"path must be absolute, not {request.path!r}")
        stored = await link_unchanged(self.node, path, request.size, request.mtime)
        return pb.StoredReply(
            sha1=stored.sha1, size=stored.size, manifest_sha1=stored.manifest_sha1 or ""
        )

    # -- mutables -------------------------------------------------------------------

    @_unary
    async def GetMutable(self, request: pb.MutableKey, context: Any) -> pb.MutableValue:
        found, value = await _run(self.node.mutables.get, _json(request.key_json, "key_json"))
        return pb.MutableValue(found=found, value_json=json.dumps(value) if found else "")

    @_unary
    async def SetMutable(self, request: pb.SetMutableRequest, context: Any) -> pb.Empty:
        key = _json(request.key_json, "key_json")
        value = _json(request.value_json, "value_json")
        update = request.update if request.HasField("update") else True
        await _run(self.node.mutables.set, key, value, update)
        return pb.Empty()

    @_unary
    async def DeleteMutable(self, request: pb.MutableKey, context: Any) -> pb.Empty:
        await _run(self.node.mutables.delete, _json(request.key_json, "key_json"))
        return pb.Empty()

    # -- feeds ----------------------------------------------------------------------

    @_unary
    async def CreateFeed(self, request: pb.FeedName, context: Any) -> pb.FeedId:
        name = request.feed_name if request.HasField("feed_name") else None
        return pb.FeedId(feed_id=await _run(self.node.feeds.create_feed, name))

    @_unary
    async def GetFeedId(self, request: pb.FeedName, context: Any) -> pb.FeedId:
        if not request.HasField("feed_name"):
            raise BadRequest("missing feed_name")
        return pb.FeedId(feed_id=await _run(self.node.feeds.get_feed_id, request.feed_name) or "")

    @_unary
    async def DeleteFeed(self, request: pb.FeedId, context: Any) -> pb.Empty:
        await _run(self.node.feeds.delete_feed, check_feed_id(request.feed_id))
        return pb.Empty()

    @_unary
    async def AppendMessages(self, request: pb.AppendMessagesRequest, context: Any) -> pb.Empty:
        feed_id, subfeed = _subfeed(request.subfeed)
        messages = [_json(text, "messages_json") for text in request.messages_json]
        await _run(self.node.feeds.append_messages, feed_id, subfeed, messages)
        self.node.appended.notify(feed_id, subfeed)
        return pb.Empty()

    @_unary
    async def GetNumMessages(self, request: pb.Subfeed, context: Any) -> pb.NumMessages:
        count = await _run(self.node.feeds.num_messages, *_subfeed(request))
        return pb.NumMessages(num_messages=count)

    @_unary
    async def WatchForNewMessages(self, request: pb.WatchRequest, context: Any) -> pb.WatchReply:
        if not 0 <= request.wait_msec <= MAX_WAIT_MSEC:
            raise BadRequest(
                f"wait_msec must be from 0 to {MAX_WAIT_MSEC}, not {request.wait_msec}"
            )
        if request.max_num_messages < 0:
            raise BadRequest("max_num_messages must not be negative")
        watches: list[Watch] = []
        for name, watch in request.watches.items():
            if watch.position < 0:
                raise BadRequest(f"watches[{name!r}].position must not be negative")
            watches.append((name, *_subfeed(watch.subfeed), watch.position))
        found = await wait_for_messages(
            self.node.feeds,
            self.node.appended,
            watches,
            request.wait_msec,
            request.max_num_messages,
            request.signed,
        )
        reply = pb.WatchReply()
        for name, messages in found.items():
            reply.messages[name].messages_json.extend(json.dumps(m) for m in messages)
        return reply


def _content_uri(key: pb.FileKey) -> ContentUri:
    """The object a FileKey names, every hash checked (never turned into a path unchecked)."""
    sha1 = check_sha1(key.sha1, "sha1")
    manifest = check_sha1(key.manifest_sha1, "manifest_sha1") if key.manifest_sha1 else None
    chunk_of = None
    if key.HasField("chunk_of"):
        chunk = key.chunk_of
        if not 0 <= chunk.start <= chunk.end:
            raise BadRequest(f"chunk_of range {chunk.start}-{chunk.end} is not a range")
        chunk_of = ChunkOf(check_sha1(chunk.sha1, "chunk_of.sha1"), chunk.start, chunk.end)
    return ContentUri(sha1, None, manifest, chunk_of)


def _subfeed(subfeed: pb.Subfeed) -> tuple[str, str]:
    return check_feed_id(subfeed.feed_id), check_subfeed_hash(subfeed.subfeed_hash)


def _json(text: str, what: str) -> Any:
    if not text:
        raise BadRequest(f"missing {what}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
