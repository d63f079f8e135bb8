"""The node's HTTP API (see the protocol reference), served with aiohttp.

Bodies stream both ways: an upload is hashed and written block by block through
`LocalStorage.object_writer` on a worker thread (hashing is CPU work and must not stall
the event loop), and downloads are read from the object file block by block. Nothing
holds a whole file in memory.

Every route but `GET /probe` needs the `KACHERY-CLIENT-AUTH-CODE` header (see auth.py);
without it the answer is 403 with a one-line reason. A bad request gets a 4xx with a
one-line plain-text reason; an unexpected exception is logged with its traceback to
stderr and answered 500 with one line, never a stack trace.

Probe with a nonce: `GET /probe?nonce=<1 to 128 hex digits>` adds `"signature"`, the hex
Ed25519 signature by the node key of the UTF-8 bytes of `"kachery-probe:" + nonce`, so a
client that knows the node ID can check it reached that very node.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Optional

from aiohttp import web

from kachery_core import __version__
from kachery_core.errors import IntegrityError, KacheryError, NotFoundError
from kachery_core.local_storage import LocalStorage
from kachery_core.storage import StoredObject
from kachery_core.uri import ChunkOf, ContentUri
from kachery_transports.local import LocalTransport

from .auth import AUTH_HEADER, Authorizer, RotatingAuthCode
from .channels.routes import add_channel_routes, load_from_channel
from .feed_routes import Appended, add_mutable_and_feed_routes
from .feeds import FeedStore
from .http_util import BadRequest, read_json_object, sha1_field
from .http_util import field as json_field
from .mutables import MutableStore
from .node_files import NodeIdentity
from .tokens import TokenStore

if TYPE_CHECKING:
    from .channels.service import ChannelService

BLOCK = 4 << 20
PROBE_NONCE = re.compile(r"[0-9a-fA-F]{1,128}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Node:
    """Everything the routes need."""

    storage: LocalStorage
    identity: NodeIdentity
    auth: RotatingAuthCode
    mutables: MutableStore
    feeds: FeedStore
    label: str = ""
    started: float = field(default_factory=time.time)
    counters: Dict[str, int] = field(default_factory=dict)
    channels: Optional[ChannelService] = None
    """The channels of its config file (see channels/), None when it has none."""

    def __post_init__(self) -> None:
        self.tokens = TokenStore(self.storage.root)
        self.authorizer = Authorizer([self.auth.accepts, self.tokens.accepts])
        self.loader = LocalTransport(self.storage)  # chunk cutting and manifest assembly
        self.appended = Appended()  # wakes feed watches, whichever API appended

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount


def create_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[_errors_middleware(), _auth_middleware(node)])
    app["node"] = node
    app.router.add_get("/probe", _probe)
    app.router.add_get("/stats", _stats)
    app.router.add_post("/store", _store)
    app.router.add_post("/storeFile", _store_file)
    app.router.add_post("/linkFile", _link_file)
    app.router.add_post("/loadFile", _load_file)
    app.router.add_post("/downloadFileData", _download_file_data)
    add_mutable_and_feed_routes(app, node.mutables, node.feeds, node.appended)
    add_channel_routes(app)
    return app


# -- middlewares -----------------------------------------------------------------------


def _errors_middleware() -> Any:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except BadRequest as exc:
            return _reason(400, str(exc))
        except NotFoundError as exc:
            return _reason(404, str(exc))
        except KacheryError as exc:
            return _reason(400, str(exc))
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            print(f"kachery-daemon: error in {request.method} {request.path}:", file=sys.stderr)
            traceback.print_exc()
            return _reason(500, f"internal error ({type(exc).__name__}); see the node's log")

    return errors


def _auth_middleware(node: Node) -> Any:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (request.method == "GET" and request.path == "/probe"):
            refusal = node.authorizer.reason_to_refuse(request.headers.get(AUTH_HEADER))
            if refusal is not None:
                return _reason(403, refusal)
        return await handler(request)

    return auth


def _reason(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=" ".join(text.split()) + "\n")


# -- routes ----------------------------------------------------------------------------


async def _probe(request: web.Request) -> web.Response:
    node: Node = request.app["node"]
    doc: Dict[str, Any] = {
        "success": True,
        "daemonVersion": __version__,
        "nodeId": node.identity.node_id,
        "kacheryStorageDir": str(node.storage.root),
        "label": node.label,
    }
    nonce = request.query.get("nonce")
    if nonce is not None:
        if not PROBE_NONCE.fullmatch(nonce):
            raise BadRequest(f"nonce must be 1 to 128 hex digits, not {nonce[:40]!r}")
        doc["signature"] = node.identity.sign(f"kachery-probe:{nonce}".encode())
    return web.json_response(doc)


async def _stats(request: web.Request) -> web.Response:
    node: Node = request.app["node"]
    stats = dict(node.counters, uptimeSeconds=int(time.time() - node.started))
    return web.json_response(
        {"success": True, "format": request.query.get("format", "json"), "stats": stats}
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
    loop = asyncio.get_running_loop()
    writer = node.storage.object_writer()
    try:
        pending = bytearray()
        while True:
            piece = await request.content.read(BLOCK)
            if not piece:
                break
            pending += piece
            if len(pending) >= BLOCK:
                await loop.run_in_executor(None, writer.write, bytes(pending))
                pending.clear()
        if pending:
            await loop.run_in_executor(None, writer.write, bytes(pending))
        if expected is not None and writer.size != expected:
            raise BadRequest(f"body had {writer.size} bytes but Content-Length said {expected}")
        stored = await loop.run_in_executor(None, writer.commit)
    finally:
        writer.abort()  # nothing if committed; otherwise the staging file goes
    node.count("storedBytes", stored.size)
    node.count("storeRequests")
    return _stored(stored)


def _readable_path(doc: Dict[str, Any]) -> Path:
    path = Path(json_field(doc, "localFilePath", str))
    if not path.is_absolute():
        raise BadRequest(f"localFilePath must be absolute, not {str(path)!r}")
    return path


async def _store_file(request: web.Request) -> web.Response:
    node: Node = request.app["node"]
    path = _readable_path(await read_json_object(request))
    stored = await asyncio.get_running_loop().run_in_executor(None, node.storage.store_file, path)
    node.count("storeRequests")
    return _stored(stored)


async def _link_file(request: web.Request) -> web.Response:
    node: Node = request.app["node"]
    doc = await read_json_object(request)
    path = _readable_path(doc)
    size = json_field(doc, "size", int)
    mtime = json_field(doc, "mtime", (int, float))
    return _stored(await link_unchanged(node, path, size, float(mtime)))


async def link_unchanged(node: Node, path: Path, size: int, mtime: float) -> StoredObject:
    """Link `path` if it still has the size and mtime the client saw (HTTP and gRPC)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise BadRequest(f"cannot read {str(path)!r}: {exc.strerror}") from None
    if st.st_size != size or st.st_mtime != mtime:
        raise BadRequest(
            f"{str(path)!r} has changed since the client looked at it (size/mtime differ)"
        )
    return await asyncio.get_running_loop().run_in_executor(None, node.storage.link_file, path)


def _file_key(doc: Dict[str, Any]) -> ContentUri:
    key = json_field(doc, "fileKey", dict)
    sha1 = sha1_field(key, "sha1")
    manifest = sha1_field(key, "manifestSha1", required=False)
    chunk_of = None
    if key.get("chunkOf") is not None:
        chunk = json_field(key, "chunkOf", dict)
        whole = sha1_field(json_field(chunk, "fileKey", dict), "sha1")
        start, end = json_field(chunk, "startByte", int), json_field(chunk, "endByte", int)
        if not 0 <= start <= end:
            raise BadRequest(f"chunkOf range {start}-{end} is not a range")
        chunk_of = ChunkOf(str(whole), start, end)
    assert sha1 is not None
    return ContentUri(sha1, None, manifest, chunk_of)


def _frame(message: Dict[str, Any]) -> bytes:
    text = json.dumps(message).encode()
    return str(len(text)).encode() + b"#" + text


async def _load_file(request: web.Request) -> web.StreamResponse:
    """Framed messages: progress, then finished (with the path) or error."""
    node: Node = request.app["node"]
    doc = await read_json_object(request)
    uri = _file_key(doc)
    channel = json_field(doc, "channelName", str, None)
    json_field(doc, "channelTimeout", (int, float), None)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    try:
        path = await asyncio.get_running_loop().run_in_executor(None, node.loader.find_path, uri)
    except NotFoundError as exc:
        if channel is None:
            await response.write(_frame({"type": "error", "error": str(exc)}))
        else:  # not here: fetch it through the channel's bucket
            await load_from_channel(node, response, uri, doc)
    except IntegrityError as exc:
        await response.write(_frame({"type": "error", "error": str(exc)}))
    else:
        size = path.stat().st_size
        await response.write(_frame({"type": "progress", "bytesLoaded": size, "bytesTotal": size}))
        await response.write(_frame({"type": "finished", "localFilePath": str(path)}))
    await response.write_eof()
    return response


async def _download_file_data(request: web.Request) -> web.StreamResponse:
    node: Node = request.app["node"]
    doc = await read_json_object(request)
    uri = _file_key(doc)
    start = json_field(doc, "startByte", int, 0)
    end = json_field(doc, "endByte", int, None)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, node.loader.find_path, uri)
    stream = node.storage.open_range(uri.sha1, start, end)
    try:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = stream.length
        await response.prepare(request)
        buffer = bytearray(max(1, min(BLOCK, stream.length)))  # small files, small buffers
        while True:
            n = await loop.run_in_executor(None, stream.readinto, buffer)
            if not n:
                break
            # the transport copies what it cannot send at once, so the buffer can be reused
            await response.write(memoryview(buffer)[:n])
        await response.write_eof()
        node.count("downloadedBytes", stream.length)
        return response
    finally:
        stream.close()
