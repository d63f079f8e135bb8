"""The node's HTTP side of channels: `/loadFile` with `channelName` (see http_api.py), and
`/channel/upload`; and the channels' start and stop with the HTTP app.

Both answer a stream of framed messages (`wire.encode_frame`: `<length>#<json>`): progress
while bytes move (`wire.progress_frame` with a `stage`, at least once a second, also while
waiting for a provider, so clients and proxies never see a silent connection), always with
the object's real size as `bytesTotal`: while that is unknown (waiting for a provider of
an object whose manifest this node lacks) no progress is sent, since the original client
prints a total of 0 as "Loaded 0 of 0 bytes (100.0 %)" (node.KEEPALIVE_SECONDS); then
`{"type": "finished", ...}` or `wire.error_frame` (`{"type": "error", "error": str,
"errorType": str}`). `errorType` (`notFound`, `integrity`, `unreachable`, `invalid`,
`error`) lets a client raise the matching exception; old clients ignore it. The work
itself is the `Node`'s (node.py).

    POST /channel/upload {"fileKey": FileKey, "channelName": str}
      -> progress..., {"type": "finished", "key": str, "url": "s3://bucket/key"}
"""

from __future__ import annotations

from aiohttp import web

from kachery_core.content.uri import ContentUri
from kachery_core.protocol import wire

from ..http_util import Send, file_key_field, framed_answer, read_json_object
from ..http_util import field as json_field
from ..node import Node


def add_channel_routes(app: web.Application, node: Node) -> None:
    async def upload(request: web.Request) -> web.StreamResponse:
        doc = await read_json_object(request)
        key = file_key_field(doc)
        uri = ContentUri(key.sha1, None, key.manifest_sha1)
        name = json_field(doc, "channelName", str)
        node.check_channel_upload(uri, name)  # refused with a 4xx before the answer starts

        async def answer(send: Send) -> None:
            async def report(loaded: int, total: int, stage: str) -> None:
                await send(wire.progress_frame(loaded, total, stage))

            object_key, url = await node.upload_to_channel(uri, name, report)
            await send(wire.finished_frame(key=object_key, url=url))

        return await framed_answer(request, answer)

    async def startup(app: web.Application) -> None:
        await node.start_channels()

    async def shutdown(app: web.Application) -> None:
        node.stop_providing()  # loads and uploads in flight get the node's grace period

    async def cleanup(app: web.Application) -> None:
        node.close_channels()

    app.router.add_post("/channel/upload", upload)
    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
