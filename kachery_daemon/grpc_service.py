"""The node's gRPC API (`kachery_core/grpc_api/kachery.proto`), served beside HTTP.

`kachery-daemon start --grpc-port N` runs it with `grpc.aio` in the node's own asyncio loop,
over the same `Node` (node.py) as the HTTP API: one storage directory, one authorizer, one
set of mutables and feeds, and one wake-up for feed watches whichever API appended. Each
RPC parses its message, calls the node, and encodes the answer; the rules live in the node.

Uploads are handed to `Node.store_upload` as they arrive, and downloads are read from the
object file block by block, so memory stays flat whatever the size. Every RPC but Probe
needs the `kachery-client-auth-code` metadata (`wire.AUTH_METADATA`), checked by
`Node.authorize` exactly as the HTTP header is: each RPC names the operation it does
(`Load`/`ReadRange` are "downloadFileData", `Link` is "linkFile"; scopes.py), so a token's
scope allows the same on both APIs. Errors are a status code (`grpc_status.status_code`:
bad input INVALID_ARGUMENT, missing object NOT_FOUND, no credential
UNAUTHENTICATED, a wrong one or one whose scope is too small PERMISSION_DENIED, a stalled
stream DEADLINE_EXCEEDED) and a one-line message, with the error
type (`wire.error_type`, "refused" for a refusal) in the trailing metadata
`wire.ERROR_TYPE_METADATA`; an unexpected exception is logged to stderr and answered
INTERNAL, one line, no traceback.

Connections and calls are limited (grpc_limits): a connection cap inside the open-file
budget, handshake and idle timeouts, and a call's request message, each message of an
upload and each answer of a stream must move within the idle timeout.

This module imports grpc, so only the node imports it, and only when `--grpc-port` is given.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    List,
    Optional,
    Tuple,
)

import grpc
from grpc import aio

from kachery_core.content.uri import ContentUri
from kachery_core.errors import ConfigError, InvalidInputError, KacheryError
from kachery_core.grpc_api import file_keys
from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc
from kachery_core.grpc_api.data_chunks import encode_data_chunk
from kachery_core.grpc_api.tuning import CHANNEL_OPTIONS, keep_freed_buffers
from kachery_core.protocol import wire
from kachery_core.protocol.address import host_port

from . import scopes
from .feed_watch import Watch, check_watch_count
from .feeds import check_feed_id, check_subfeed_hash
from .grpc_limits import GrpcLimits, next_message, upload_messages
from .grpc_status import AnswerUnread, Refused, abort, end_behind_unread_answer
from .json_bodies import parse_json
from .node import Node

BLOCK = 1 << 20
"""Bytes per DataChunk sent: well under the 4 MiB default message limit of any client, and
small enough that the few a client holds at once (grpc's receive window, the message being
read, those waiting to be written) keep a 1 GiB load under 64 MiB of RSS."""
Method = Callable[..., Awaitable[Any]]


async def start_grpc_server(node: Node, host: str, port: int, limits: GrpcLimits) -> aio.Server:
    """Serve the gRPC API of `node` on host:port within `limits` (connection cap and
    timeouts, see grpc_limits); `ConfigError` when it cannot listen."""
    keep_freed_buffers()
    server = aio.server(
        options=[
            *CHANNEL_OPTIONS,
            *limits.server_options(),
            ("grpc.so_reuseport", 0),  # a port in use is an error, as it is for HTTP
        ]
    )
    add_service(server, KacheryService(node, limits.message_idle_seconds, limits.write_seconds))
    address = host_port(host, port)
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


BULK_ANSWERS = ("Load", "ReadRange")
"""Answer streams of DataChunks that the service encodes itself (`data_chunks`)."""

_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_service(server: aio.Server, service: KacheryService) -> None:
    """Register the service's methods as the generated code would, except that:

    * the bulk answers are bytes already encoded (`encode_data_chunk`): one copy of each
      block on its way out instead of three (into the message, serialized, handed to grpc);
    * a method with one request message takes it as a stream (`_one_request`), so that a
      call whose message never comes is ended after the message idle timeout; grpc would
      wait for it forever (the wire is the same: clients see no difference)."""
    descriptor = pb.DESCRIPTOR.services_by_name["Kachery"]
    handlers = {}
    for method in descriptor.methods:
        kind = _HANDLER_KINDS[(True, method.server_streaming)]
        reply = getattr(pb, method.output_type.name)
        call = getattr(service, method.name)
        if not method.client_streaming:
            call = _one_request(call, service.message_idle_seconds)
        handlers[method.name] = kind(
            call,
            request_deserializer=getattr(pb, method.input_type.name).FromString,
            response_serializer=None if method.name in BULK_ANSWERS else reply.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(descriptor.full_name, handlers),)
    )
    if hasattr(server, "add_registered_method_handlers"):  # newer grpcio: faster lookup
        server.add_registered_method_handlers(descriptor.full_name, handlers)


def _one_request(call: Method, idle_seconds: float) -> Method:
    """`call(request, context)` as a handler of a request stream: its one message must come
    within `idle_seconds`, else the call ends with DEADLINE_EXCEEDED."""

    async def request(requests: AsyncIterator[Any], context: aio.ServicerContext) -> Any:
        try:
            iterator = requests.__aiter__()
            message = await next_message(iterator, idle_seconds, "the request")
            if message is None:
                raise InvalidInputError("the call had no request message")
            # Read the request stream to its end too (a client with one message has already
            # closed its side): grpcio 1.70 (the last for Python 3.8) frees a call's HTTP/2
            # stream only then, so a connection refused every call once its stream cap of
            # calls had ended (REFUSED_STREAM).
            if await next_message(iterator, idle_seconds, "the end of the request") is not None:
                raise InvalidInputError("the call had more than one request message")
            return message
        except Exception as exc:
            await abort(context, exc)

    async def answer(requests: AsyncIterator[Any], context: aio.ServicerContext) -> Any:
        return await call(await request(requests, context), context)

    return answer


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


def _rpc(operation: str) -> Callable[[Method], Method]:
    """A call with a single answer, doing `operation` (a key of `scopes.OPERATIONS`): checks
    the credential may do it; errors become status codes."""
    assert operation in scopes.OPERATIONS, operation

    def wrap(method: Method) -> Method:
        @functools.wraps(method)
        async def handler(self: KacheryService, request: Any, context: aio.ServicerContext) -> Any:
            try:
                self.authorize(context, operation)
                return await method(self, request, context)
            except Exception as exc:
                await abort(context, exc)

        handler.operation = operation  # type: ignore[attr-defined]  # checked by the tests
        return handler

    return wrap


def _streaming(operation: str) -> Callable[[Callable[..., AsyncGenerator[Any, None]]], Method]:
    """A call that answers a stream, doing `operation`; as `_rpc`. Each answer is written
    with `KacheryService.write`, so an answer nobody reads ends the call."""
    assert operation in scopes.OPERATIONS, operation

    def wrap(method: Callable[..., AsyncGenerator[Any, None]]) -> Method:
        @functools.wraps(method)
        async def handler(self: KacheryService, request: Any, context: aio.ServicerContext) -> None:
            replies: Optional[AsyncGenerator[Any, None]] = None
            try:
                self.authorize(context, operation)
                replies = method(self, request, context)
                async for reply in replies:
                    await self.write(context, reply)
            except AnswerUnread as exc:
                end_behind_unread_answer(context, exc)
            except Exception as exc:
                await abort(context, exc)
            finally:
                if replies is not None:  # its file is closed now, not when it is collected
                    await replies.aclose()

        handler.operation = operation  # type: ignore[attr-defined]  # checked by the tests
        return handler

    return wrap


class KacheryService(pb_grpc.KacheryServicer):
    def __init__(self, node: Node, message_idle_seconds: float, write_seconds: float) -> None:
        self.node = node
        self.write_seconds = write_seconds
        """An answer that cannot be sent for this long (the client reads nothing) ends the call."""
        self.message_idle_seconds = message_idle_seconds
        """A call whose request message does not come within this, or an upload stream
        silent for this long, is ended (`grpc_limits.next_message`)."""

    async def write(self, context: aio.ServicerContext, reply: Any) -> None:
        """Send one answer of a stream; `StreamStalled` if it cannot go within
        `write_seconds` (grpc waits for the client's flow-control window forever)."""
        try:
            await asyncio.wait_for(context.write(reply), self.write_seconds)
        except asyncio.TimeoutError:
            raise AnswerUnread(
                f"the answer was not read: nothing could be sent for {self.write_seconds:g} s"
            ) from None

    def authorize(self, context: aio.ServicerContext, operation: str) -> None:
        """The same check as the HTTP header's: `Refused` unless the credential may do
        `operation`."""
        value: Optional[str] = None
        for key, item in context.invocation_metadata() or ():
            if key == wire.AUTH_METADATA:
                value = item.decode() if isinstance(item, bytes) else str(item)
        refusal = self.node.authorize(value, operation)
        if refusal is not None:
            code = (
                grpc.StatusCode.UNAUTHENTICATED if not value else grpc.StatusCode.PERMISSION_DENIED
            )
            raise Refused(code, refusal)

    # -- node -----------------------------------------------------------------------

    @_rpc("probe")
    async def Probe(self, request: pb.ProbeRequest, context: Any) -> pb.ProbeReply:
        answer = self.node.probe(request.nonce or None)
        return pb.ProbeReply(
            node_id=answer.node_id,
            daemon_version=answer.daemon_version,
            storage_dir=answer.storage_dir,
            label=answer.label,
            signature=answer.signature or "",
        )

    # -- files ----------------------------------------------------------------------

    @_rpc("store")
    async def Store(self, requests: AsyncIterator[pb.DataChunk], context: Any) -> pb.StoredReply:
        async def pieces() -> AsyncIterator[bytes]:
            async for chunk in upload_messages(requests, self.message_idle_seconds):
                yield chunk.data

        stored = await self.node.store_upload(pieces())
        return pb.StoredReply(
            sha1=stored.sha1, size=stored.size, manifest_sha1=stored.manifest_sha1 or ""
        )

    @_streaming("downloadFileData")
    def Load(self, request: pb.FileKey, context: Any) -> AsyncGenerator[bytes, None]:
        return self._send(file_keys.from_pb(request), 0, None)

    @_streaming("downloadFileData")
    def ReadRange(self, request: pb.RangeRequest, context: Any) -> AsyncGenerator[bytes, None]:
        end = request.end if request.HasField("end") else None
        return self._send(file_keys.from_pb(request.file_key), request.start, end)

    async def _send(
        self, uri: ContentUri, start: int, end: Optional[int]
    ) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end) of an object, BLOCK by BLOCK, as encoded DataChunks; the first
        chunk says the total.

        The object may first be cut or assembled from pieces (see `Node.find`). The next
        block is read on a worker thread while this one is sent (disk reads never stall the
        event loop); at most two blocks are in memory.
        """
        stream = await self.node.open_range(uri, start, end)
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
                    raise KacheryError(f"sha1://{uri.sha1} ended early while it was read")
                sent += len(data)
                offset += len(data)
                if sent < total:
                    reading = read(offset)
                yield encode_data_chunk(data, total if first else 0)
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

    @_rpc("linkFile")
    async def Link(self, request: pb.LinkRequest, context: Any) -> pb.StoredReply:
        stored = await self.node.link_unchanged(request.path, request.size, request.mtime)
        return pb.StoredReply(
            sha1=stored.sha1, size=stored.size, manifest_sha1=stored.manifest_sha1 or ""
        )

    # -- mutables -------------------------------------------------------------------

    @_rpc("mutable/get")
    async def GetMutable(self, request: pb.MutableKey, context: Any) -> pb.MutableValue:
        found, value = await self.node.get_mutable(_json(request.key_json, "key_json"))
        return pb.MutableValue(found=found, value_json=json.dumps(value) if found else "")

    @_rpc("mutable/set")
    async def SetMutable(self, request: pb.SetMutableRequest, context: Any) -> pb.Empty:
        key = _json(request.key_json, "key_json")
        value = _json(request.value_json, "value_json")
        update = request.update if request.HasField("update") else True
        await self.node.set_mutable(key, value, update)
        return pb.Empty()

    @_rpc("mutable/delete")
    async def DeleteMutable(self, request: pb.MutableKey, context: Any) -> pb.Empty:
        await self.node.delete_mutable(_json(request.key_json, "key_json"))
        return pb.Empty()

    # -- feeds ----------------------------------------------------------------------

    @_rpc("feed/createFeed")
    async def CreateFeed(self, request: pb.FeedName, context: Any) -> pb.FeedId:
        name = request.feed_name if request.HasField("feed_name") else None
        return pb.FeedId(feed_id=await self.node.create_feed(name))

    @_rpc("feed/getFeedId")
    async def GetFeedId(self, request: pb.FeedName, context: Any) -> pb.FeedId:
        if not request.HasField("feed_name"):
            raise InvalidInputError("missing feed_name")
        return pb.FeedId(feed_id=await self.node.get_feed_id(request.feed_name) or "")

    @_rpc("feed/deleteFeed")
    async def DeleteFeed(self, request: pb.FeedId, context: Any) -> pb.Empty:
        await self.node.delete_feed(check_feed_id(request.feed_id))
        return pb.Empty()

    @_rpc("feed/appendMessages")
    async def AppendMessages(self, request: pb.AppendMessagesRequest, context: Any) -> pb.Empty:
        feed_id, subfeed = _subfeed(request.subfeed)
        messages = [_json(text, "messages_json") for text in request.messages_json]
        await self.node.append_messages(feed_id, subfeed, messages)
        return pb.Empty()

    @_rpc("feed/getNumLocalMessages")
    async def GetNumMessages(self, request: pb.Subfeed, context: Any) -> pb.NumMessages:
        count = await self.node.num_messages(*_subfeed(request))
        return pb.NumMessages(num_messages=count)

    @_rpc("feed/watchForNewMessages")
    async def WatchForNewMessages(self, request: pb.WatchRequest, context: Any) -> pb.WatchReply:
        if request.wait_msec < 0:  # a wait over feed_watch.MAX_WAIT_MSEC is cut to it
            raise InvalidInputError(f"wait_msec must be 0 or more, not {request.wait_msec}")
        if request.max_num_messages < 0:
            raise InvalidInputError("max_num_messages must not be negative")
        check_watch_count(len(request.watches))
        watches: List[Watch] = []
        for name, watch in request.watches.items():
            if watch.position < 0:
                raise InvalidInputError(f"watches[{name!r}].position must not be negative")
            watches.append((name, *_subfeed(watch.subfeed), watch.position))
        found = await self.node.watch(
            watches, request.wait_msec, request.max_num_messages, request.signed
        )
        return await asyncio.get_running_loop().run_in_executor(None, _watch_reply, found)


def _watch_reply(found: Dict[str, List[str]]) -> pb.WatchReply:
    """The reply of a watch, from the messages' JSON texts (for a worker thread)."""
    reply = pb.WatchReply()
    for name, texts in found.items():
        reply.messages[name].messages_json.extend(texts)
    return reply


def _subfeed(subfeed: pb.Subfeed) -> Tuple[str, str]:
    return check_feed_id(subfeed.feed_id), check_subfeed_hash(subfeed.subfeed_hash)


def _json(text: str, what: str) -> Any:
    if not text:
        raise InvalidInputError(f"missing {what}")
    return parse_json(text, what)
