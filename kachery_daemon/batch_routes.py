"""The node's HTTP route for batch downloads: `POST /downloadFiles` (see batch_send.py).

    POST /downloadFiles  {"files": [FileKey, ...]} -> frames and bytes (wire.py, "batch
                         downloads"): per object `file` + its bytes, `notFound` or
                         `notSent`; then `finished` (or `error` for the whole batch)

Same scope as `/downloadFileData` ("read", scopes.py). A malformed body is a 400 before
anything is sent; once the answer has started a failure is an `error` frame.
"""

from __future__ import annotations

from aiohttp import web

from kachery_core.protocol import wire

from .batch_send import parse_batch_request
from .http_util import Send, framed_answer, read_json_object
from .node import Node


def add_batch_routes(app: web.Application, node: Node) -> None:
    async def download_files(request: web.Request) -> web.StreamResponse:
        sha1s = parse_batch_request(await read_json_object(request))

        async def answer(send: Send) -> None:
            sent = 0
            async for items in node.read_batch(sha1s):
                # one write per slice: few trips through aiohttp for many small objects
                await send(b"".join(piece for item in items for piece in item.frames()))
                sent += sum(len(item.data) for item in items if item.data is not None)
            node.count("downloadedBytes", sent)
            node.count("batchDownloads")
            await send(wire.finished_frame())

        return await framed_answer(request, answer)

    app.router.add_post("/downloadFiles", download_files)
