"""The node's HTTP side of channels: `/loadFile` with `channelName`, and `/channel/upload`.

Both answer a stream of framed messages (see the protocol: `<length>#<json>`): progress
while bytes move (`{"type": "progress", "bytesLoaded", "bytesTotal", "stage"}`, at least
once a second, also while waiting for a provider, so clients and proxies never see a
silent connection), then `{"type": "finished", ...}` or `{"type": "error", "error": str,
"errorType": str}`. `errorType` (`notFound`, `integrity`, `unreachable`, `invalid`,
`error`) lets a client raise the matching exception; old clients ignore it.

    POST /channel/upload {"fileKey": FileKey, "channelName": str}
      -> progress..., {"type": "finished", "key": str, "url": "s3://bucket/key"}
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List

from aiohttp import web

from kachery_core.errors import (
    ConfigError,
    IntegrityError,
    InvalidInputError,
    KacheryError,
    NotFoundError,
    TransportError,
)
from kachery_core.uri import ContentUri

from ..http_util import BadRequest, read_json_object, sha1_field
from ..http_util import field as json_field
from .service import DEFAULT_TIMEOUT, ChannelService, TransferState

if TYPE_CHECKING:
    from ..server import Node

PROGRESS_SECONDS = 0.25
KEEPALIVE_SECONDS = 1.0
NO_CHANNELS_HINT = (
    "this node belongs to no channel; give it [channels.NAME] tables in its config file "
    "(kachery-daemon start --config FILE, or <storage dir>/kachery-node.toml)"
)


def add_channel_routes(app: web.Application) -> None:
    app.router.add_post("/channel/upload", _upload)
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)


async def load_from_channel(
    node: Node, response: web.StreamResponse, uri: ContentUri, doc: Dict[str, Any]
) -> None:
    """Answer a `/loadFile` that missed locally by fetching through the named channel."""
    name = str(doc["channelName"])
    timeout = doc.get("channelTimeout", DEFAULT_TIMEOUT)
    service = node.channels
    try:
        if service is None:
            raise InvalidInputError(f"cannot load {uri} from channel {name!r}", NO_CHANNELS_HINT)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout <= 86400
        ):
            raise InvalidInputError(f"channelTimeout must be seconds above 0, not {timeout!r}")
        path = await _run(response, service, service.load, uri, name, float(timeout))
    except KacheryError as exc:
        await response.write(frame(_error(exc)))
        return
    size = path.stat().st_size
    await response.write(frame({"type": "progress", "bytesLoaded": size, "bytesTotal": size}))
    await response.write(frame({"type": "finished", "localFilePath": str(path)}))


async def _upload(request: web.Request) -> web.StreamResponse:
    node: Node = request.app["node"]
    doc = await read_json_object(request)
    key = json_field(doc, "fileKey", dict)
    sha1 = sha1_field(key, "sha1")
    assert sha1 is not None
    uri = ContentUri(sha1, None, sha1_field(key, "manifestSha1", required=False))
    name = json_field(doc, "channelName", str)
    service = node.channels
    if service is None:
        raise BadRequest(f"cannot upload to channel {name!r}: {NO_CHANNELS_HINT}")
    bucket = service.bucket(name)  # an unknown channel is a 400 naming the node's channels
    if not node.storage.has(sha1):
        raise NotFoundError(f"sha1://{sha1} is not stored on this node", "store it first")
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    try:
        object_key = await _run(response, service, service.upload, uri, name)
    except KacheryError as exc:
        await response.write(frame(_error(exc)))
    else:
        await response.write(
            frame({"type": "finished", "key": object_key, "url": bucket.url(object_key)})
        )
    await response.write_eof()
    return response


async def _run(
    response: web.StreamResponse, service: ChannelService, work: Callable[..., Any], *args: Any
) -> Any:
    """Run `work(*args, state)` on the channel threads, sending progress frames meanwhile."""
    loop = asyncio.get_running_loop()
    state = service.new_state()
    future = loop.run_in_executor(service.executor, functools.partial(work, *args, state))
    sent: Any = None
    sent_at = 0.0
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=PROGRESS_SECONDS)
            if done:
                return future.result()
            now = loop.time()
            snapshot = (state.loaded, state.total, state.stage)
            if snapshot != sent or now - sent_at >= KEEPALIVE_SECONDS:
                await response.write(frame(_progress(state)))
                sent, sent_at = snapshot, now
    except BaseException:
        state.cancelled.set()  # the client left, or the node is stopping
        raise
    finally:
        service.forget(state)


def _progress(state: TransferState) -> Dict[str, Any]:
    return {
        "type": "progress",
        "bytesLoaded": state.loaded,
        "bytesTotal": state.total,
        "stage": state.stage,
    }


def _error(exc: KacheryError) -> Dict[str, Any]:
    kind = "error"
    if isinstance(exc, IntegrityError):
        kind = "integrity"
    elif isinstance(exc, NotFoundError):
        kind = "notFound"
    elif isinstance(exc, TransportError):
        kind = "unreachable"
    elif isinstance(exc, (InvalidInputError, ConfigError)):
        kind = "invalid"
    return {"type": "error", "error": " ".join(str(exc).split()), "errorType": kind}


def frame(message: Dict[str, Any]) -> bytes:
    text = json.dumps(message).encode()
    return str(len(text)).encode() + b"#" + text


# -- lifecycle -------------------------------------------------------------------------


async def _startup(app: web.Application) -> None:
    node: Node = app["node"]
    service = node.channels
    if service is None:
        return
    loop = asyncio.get_running_loop()

    def count(name: str, amount: int) -> None:  # from worker threads: counters live on the loop
        with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone
            loop.call_soon_threadsafe(node.count, name, amount)

    service.count = count
    from .provider import Provider

    tasks: List[asyncio.Future[None]] = []
    for name, bucket in sorted(service.buckets.items()):
        channel = bucket.channel
        roles = [r for r, on in (("request", channel.request), ("provide", channel.provide)) if on]
        print(
            f"kachery-daemon: channel {name}: {bucket.url(channel.prefix)} at {channel.endpoint} "
            f"({', '.join(roles) or 'load only'})",
            file=sys.stderr,
            flush=True,
        )
        if channel.provide:
            tasks.append(asyncio.ensure_future(Provider(service, bucket).run()))
    app["channel_providers"] = tasks


async def _shutdown(app: web.Application) -> None:
    """Stop providing; loads and uploads in flight get the node's grace period."""
    for task in app.get("channel_providers", []):
        task.cancel()


async def _cleanup(app: web.Application) -> None:
    node: Node = app["node"]
    if node.channels is not None:
        node.channels.close()
