"""The node's HTTP API (see the protocol reference), served with aiohttp over a `Node`.

Each route parses its request, calls the `Node` (node.py), and encodes the answer; the
rules themselves live in the node. Bodies stream both ways: an upload is handed to
`Node.store_upload` as it arrives, and downloads are read from the object file block by
block. Nothing holds a whole file in memory.

    GET  /probe[?nonce=HEX]   identity; with a nonce, `"signature"` (see below); no auth
    GET  /stats               counters and uptime
    POST /store               raw bytes (Content-Length or chunked) -> sha1, manifestSha1
    POST /storeFile           {"localFilePath"} -> stored copy of a file of this machine
    POST /linkFile            {"localFilePath", "size", "mtime"} -> linked if unchanged
    POST /loadFile            {"fileKey", "channelName"?, "channelTimeout"?} -> frames:
                              progress, then finished {"localFilePath"} or error
    POST /downloadFileData    {"fileKey", "startByte"?, "endByte"?} -> the bytes
    POST /downloadFiles       {"files": [FileKey, ...]} -> many small objects, framed
                              (see batch_routes.py)
    POST /mutable/*, /feed/*  see feed_routes.py
    POST /channel/upload      see channels/routes.py
    GET  /ui/..., /metrics    the web pages (see ui/__init__.py)

Every route but `GET /probe` needs the `KACHERY-CLIENT-AUTH-CODE` header
(`wire.AUTH_HEADER`, see auth.py) with a credential whose scope allows the route
(`scopes.OPERATIONS`, keyed by the route's path); otherwise the answer is 403 with a
one-line reason. A
bad request gets a 4xx with a one-line plain-text reason (`http_status` below); an
unexpected exception is logged with its traceback to stderr and answered 500 with one line,
never a stack trace. Every 4xx/5xx also carries `KACHERY-ERROR-TYPE`
(`wire.ERROR_TYPE_HEADER`: `wire.error_type` of the failure, "refused" for a 403) so a
client raises the same exception whichever backend it uses. Limits (docs/running-a-node.md, "Limits,
hostile peers and file modes"): a JSON body over 16 MiB is 413, a body that stalls or comes
too slowly is 408 (and its connection closed), a full disk is 507 (error type "error"),
connections beyond the cap get 503 (connection_guard.py).

Probe with a nonce: `GET /probe?nonce=<1 to 128 hex digits>` adds `"signature"`, the hex
Ed25519 signature by the node key of `wire.probe_message(nonce)` (the UTF-8 bytes of
`"kachery-probe:" + nonce`), so a client that knows the node ID can check it reached that
very node.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Optional, Tuple, Type

from aiohttp import web

from kachery_core.errors import InvalidInputError, KacheryError, NotFoundError
from kachery_core.protocol import wire
from kachery_core.store.base import StoredObject

from .batch_routes import add_batch_routes
from .channels.routes import add_channel_routes
from .connection_guard import ServerLimits
from .feed_routes import add_mutable_and_feed_routes
from .http_util import (
    BadRequest,
    BodyTimeout,
    BodyTooLarge,
    Send,
    answer_and_close,
    error_response,
    file_key_field,
    framed_answer,
    limits_of,
    read_json_object,
    read_piece,
)
from .http_util import field as json_field
from .node import Node, NoSpaceError, report_unexpected

BLOCK = 4 << 20
SENDFILE_PIECE = 1 << 20
"""A download leaves by sendfile this much at a time, each piece under the write timeout."""
REFUSED = "refused"
UI_OPERATION = "ui"
"""The error type of a 403 (no or a wrong credential)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_STATUS: Tuple[Tuple[Type[BaseException], int], ...] = (
    (BodyTooLarge, 413),
    (BodyTimeout, 408),
    (NoSpaceError, 507),  # Insufficient Storage
    (InvalidInputError, 400),  # BadRequest too
    (UnicodeError, 400),  # a lone surrogate (\ud800) that cannot become a file name or SQL text
    (RecursionError, 400),  # a value nested too deeply to encode again
    (NotFoundError, 404),
    (KacheryError, 400),
)
"""Exception -> HTTP status, first match wins; anything else is a bug, answered 500."""


def http_status(exc: BaseException) -> Optional[int]:
    for cls, status in HTTP_STATUS:
        if isinstance(exc, cls):
            return status
    return None


def create_app(
    node: Node, limits: Optional[ServerLimits] = None, pages: bool = True
) -> web.Application:
    """The HTTP API of `node`; a body slower than `limits` allow is answered 408.
    `pages`: with the web pages under /ui/ and /metrics (ui/)."""
    app = web.Application(middlewares=[_errors_middleware(), _auth_middleware(node)])
    app["node"] = node
    app["limits"] = limits or ServerLimits()
    app.router.add_get("/probe", _probe)
    app.router.add_get("/stats", _stats)
    app.router.add_post("/store", _store)
    app.router.add_post("/storeFile", _store_file)
    app.router.add_post("/linkFile", _link_file)
    app.router.add_post("/loadFile", _load_file)
    app.router.add_post("/downloadFileData", _download_file_data)
    add_batch_routes(app, node)
    add_mutable_and_feed_routes(app, node)
    add_channel_routes(app, node)
    if pages:
        from .ui import add_ui  # Jinja2 is imported only here, never by the command line

        add_ui(app, node)
    return app


# -- middlewares -----------------------------------------------------------------------


def _errors_middleware() -> Any:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's own: no such route, wrong method
            if exc.status >= 400:
                exc.headers[wire.ERROR_TYPE_HEADER] = _aiohttp_error_type(exc.status)
            raise
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            status = http_status(exc)
            if status is not None:
                kind = "error" if status >= 500 else wire.error_type(exc)
                response = error_response(status, _reason(exc), kind)
                if isinstance(exc, BodyTimeout):
                    return await answer_and_close(request, response)
                return response
            line = report_unexpected(exc, f"{request.method} {request.path}")
            node: Node = request.app["node"]
            node.activity.add("error", f"{request.method} {request.path}"[:200], None, line)
            return error_response(500, line, "error")

    return errors


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeError):
        return "text with invalid Unicode (a lone surrogate such as \\ud800) is not accepted"
    if isinstance(exc, RecursionError):
        return "a value is nested too deeply"
    return str(exc)


def _aiohttp_error_type(status: int) -> str:
    if status == 404:
        return "notFound"
    return "invalid" if status < 500 else "error"


def _auth_middleware(node: Node) -> Any:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = node.authorize(request.headers.get(wire.AUTH_HEADER), operation(request))
        if refusal is not None:
            return error_response(403, refusal, REFUSED)
        return await handler(request)

    return auth


def operation(request: web.Request) -> Optional[str]:
    """The operation a request asks for (a key of `scopes.OPERATIONS`): the path of the
    route it matched, without the slash; None when it matches none."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    if resource.canonical.startswith("/ui"):
        return UI_OPERATION  # the pages check their own credential (ui/access.py)
    return resource.canonical.lstrip("/")


# -- routes ----------------------------------------------------------------------------


async def _probe(request: web.Request) -> web.Response:
    node: Node = request.app["node"]
    answer = node.probe(request.query.get("nonce"))
    doc: Dict[str, Any] = {
        "success": True,
        "daemonVersion": answer.daemon_version,
        "nodeId": answer.node_id,
        "kacheryStorageDir": answer.storage_dir,
        "label": answer.label,
    }
    if answer.signature is not None:
        doc["signature"] = answer.signature
    return web.json_response(doc)


async def _stats(request: web.Request) -> web.Response:
    node: Node = request.app["node"]
    return web.json_response(
        {"success": True, "format": request.query.get("format", "json"), "stats": node.stats()}
    )


def _stored(obj: StoredObject) -> web.Response:
    return web.json_response(
        {"success": True, "error": None, "sha1": obj.sha1, "manifestSha1": obj.manifest_sha1}
    )


async def _store(request: web.Request) -> web.Response:
    """Raw bytes in the body; hashed and written as they arrive."""
    node: Node = request.app["node"]
    expected = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if expected is None and not chunked:
        raise BadRequest("POST /store needs a Content-Length header (or a chunked body)")
    return _stored(await node.store_upload(_body(request), expected, "Content-Length"))


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    while True:
        piece = await read_piece(request, BLOCK)
        if not piece:
            return
        yield piece


async def _store_file(request: web.Request) -> web.Response:
    node: Node = request.app["node"]
    doc = await read_json_object(request)
    return _stored(await node.store_file(json_field(doc, "localFilePath", str)))


async def _link_file(request: web.Request) -> web.Response:
    node: Node = request.app["node"]
    doc = await read_json_object(request)
    path = json_field(doc, "localFilePath", str)
    size = json_field(doc, "size", int)
    mtime = json_field(doc, "mtime", (int, float))
    return _stored(await node.link_unchanged(path, size, float(mtime)))


async def _load_file(request: web.Request) -> web.StreamResponse:
    """Framed messages: progress, then finished (with the path) or error."""
    node: Node = request.app["node"]
    doc = await read_json_object(request)
    uri = file_key_field(doc)
    channel = json_field(doc, "channelName", str, None)
    timeout = json_field(doc, "channelTimeout", (int, float), None)

    async def answer(send: Send) -> None:
        async def report(loaded: int, total: int, stage: str) -> None:
            await send(wire.progress_frame(loaded, total, stage))

        path = await node.load(uri, channel, timeout, report)
        size = path.stat().st_size
        await send(wire.progress_frame(size, size))
        await send(wire.finished_frame(localFilePath=str(path)))

    return await framed_answer(request, answer)


async def _download_file_data(request: web.Request) -> web.StreamResponse:
    node: Node = request.app["node"]
    doc = await read_json_object(request)
    uri = file_key_field(doc)
    start = json_field(doc, "startByte", int, 0)
    end = json_field(doc, "endByte", int, None)
    stream = await node.open_range(uri, start, end)
    try:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = stream.length
        await response.prepare(request)  # sends the headers
        await _send_range(request, response, stream)
        await response.write_eof()
        node.count("downloadedBytes", stream.length)
        return response
    finally:
        stream.close()


async def _send_range(request: web.Request, response: web.StreamResponse, stream: Any) -> None:
    """The bytes of `stream` (a `FileRange`) after the headers: the kernel copies them from
    the file to the socket (sendfile) without passing through Python.

    They go a `SENDFILE_PIECE` at a time, and a piece the client does not take within the
    write timeout (`ServerLimits.write_seconds`) closes the connection: the kernel copy
    bypasses the connection guard's watch on unsent answers. asyncio itself reads and
    writes blocks where sendfile cannot be used (TLS); a loop without sendfile at all gets
    blocks written through aiohttp.
    """
    loop = asyncio.get_running_loop()
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    if not stream.length:
        return
    write_seconds = limits_of(request).write_seconds
    sent = 0
    # asyncio wants a file object with a binary mode; this one shares the descriptor
    with open(stream.fileno(), "rb", closefd=False) as file:
        while sent < stream.length:
            count = min(SENDFILE_PIECE, stream.length - sent)
            piece = loop.sendfile(transport, file, stream.offset + sent, count)
            try:
                done = await asyncio.wait_for(piece, write_seconds)
            except NotImplementedError:
                if sent:
                    raise
                await _write_blocks(response, stream, loop)
                return
            except asyncio.TimeoutError:
                transport.abort()
                raise ConnectionResetError(
                    f"the client read nothing for {write_seconds:g} s"
                ) from None
            if done != count:
                break
            sent += done
    if sent != stream.length:
        raise KacheryError(f"an object ended early while it was read ({sent} of {stream.length})")


async def _write_blocks(
    response: web.StreamResponse, stream: Any, loop: asyncio.AbstractEventLoop
) -> None:
    buffer = bytearray(max(1, min(BLOCK, stream.length)))  # small files, small buffers
    while True:
        n = await loop.run_in_executor(None, stream.readinto, buffer)
        if not n:
            break
        # the transport copies what it cannot send at once, so the buffer can be reused
        await response.write(memoryview(buffer)[:n])
