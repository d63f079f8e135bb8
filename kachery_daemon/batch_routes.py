"""The node's HTTP routes for batches of small objects (see batch_send.py, batch_store.py).

    POST /downloadFiles   {"files": [FileKey, ...]} -> frames and bytes (wire.py, "batch
                          downloads"): per object `file` + its bytes, `notFound` or
                          `notSent`; then `finished` (or `error` for the whole batch)
    POST /storeFiles      frames and bytes (wire.py, "batch stores"): per object `file`
                          {"sha1", "size"} + its bytes, then `finished` -> {"stored": [...]}
    POST /storeLocalFiles {"localFilePaths": [...]} -> {"stored": [...]}

`/downloadFiles` has the scope of `/downloadFileData` ("read"), `/storeFiles` that of
`/store` ("write"), `/storeLocalFiles` that of `/storeFile` (the client-auth code only;
scopes.py). A malformed request is a 400 with one line; once a download's answer has
started a failure is an `error` frame. A batch store's body is read as it arrives, under
the same idle and minimum-rate limits as every body (`read_piece`), and each of its bounds
(wire.py) is checked before the bytes it announces are read.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Dict, List, Tuple

from aiohttp import web

from kachery_core.content.uri import is_sha1
from kachery_core.protocol import wire

from .batch_send import parse_batch_request
from .batch_store import Item, parse_paths_request
from .http_util import BadRequest, Send, framed_answer, read_json_object, read_piece
from .node import Node

READ_SIZE = 256 << 10
"""Body bytes asked for at a time."""


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

    async def store_files(request: web.Request) -> web.Response:
        stored = await node.store_objects(_objects(FramedBody(request)))
        node.count("batchStores")
        return _stored(stored)

    async def store_local_files(request: web.Request) -> web.Response:
        paths = parse_paths_request(await read_json_object(request))
        stored = await node.store_local_files(paths)
        node.count("batchStores")
        return _stored(stored)

    app.router.add_post("/downloadFiles", download_files)
    app.router.add_post("/storeFiles", store_files)
    app.router.add_post("/storeLocalFiles", store_local_files)


def _stored(items: List[Item]) -> web.Response:
    return web.json_response({"success": True, "stored": [wire.batch_store_item(i) for i in items]})


class FramedBody:
    """A request body read as `<length>#<json>` frames and raw bytes, a piece at a time."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._buffer = bytearray()
        self._ended = False

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size and not self._ended:
            piece = await read_piece(self._request, READ_SIZE)
            if piece:
                self._buffer += piece
            else:
                self._ended = True

    async def exactly(self, size: int, what: str) -> bytes:
        await self._fill(size)
        if len(self._buffer) < size:
            raise BadRequest(f"the body of a batch store ended in the middle of {what}")
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def frame(self) -> Dict[str, Any]:
        """The next header frame: a JSON object of at most `wire.STORE_BATCH_MAX_HEADER`."""
        await self._fill(9)
        mark = self._buffer.find(b"#", 0, 9)
        digits = bytes(self._buffer[: max(mark, 0)])
        if not self._buffer:
            raise BadRequest("the body of a batch store ended without its 'finished' frame")
        if mark <= 0 or not digits.isdigit():
            raise BadRequest("the body of a batch store is not framed as <length>#<json>")
        length = int(digits)
        if length > wire.STORE_BATCH_MAX_HEADER:
            raise BadRequest(
                f"a header frame of {length} bytes, over the {wire.STORE_BATCH_MAX_HEADER} allowed"
            )
        del self._buffer[: mark + 1]
        text = await self.exactly(length, "a header frame")
        try:
            doc = json.loads(text)
        except ValueError:
            raise BadRequest("a header frame of a batch store is not JSON") from None
        if not isinstance(doc, dict):
            raise BadRequest("a header frame of a batch store must be a JSON object")
        return doc

    async def at_end(self) -> bool:
        await self._fill(1)
        return not self._buffer


async def _objects(body: FramedBody) -> AsyncIterator[Tuple[str, bytes]]:
    """(sha1, bytes) of each `file` frame, every bound checked before its bytes are read."""
    count = total = 0
    while True:
        frame = await body.frame()
        kind = frame.get("type")
        if kind == "finished":
            break
        if kind != "file":
            raise BadRequest(f"a batch store carries 'file' frames, not {str(kind)[:40]!r}")
        sha1, size = frame.get("sha1"), frame.get("size")
        if not is_sha1(sha1):
            raise BadRequest(f"a 'file' frame's sha1 must be 40 hex digits, not {str(sha1)[:60]!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest(f"a 'file' frame's size must be a count of bytes, not {size!r:.40}")
        count, total = count + 1, total + size
        if count > wire.STORE_BATCH_MAX_FILES:
            raise BadRequest(
                f"a batch store may carry at most {wire.STORE_BATCH_MAX_FILES} objects",
                "split it into several requests",
            )
        if size > wire.STORE_BATCH_MAX_OBJECT_BYTES:
            raise BadRequest(
                f"an object of {size} bytes, over the {wire.STORE_BATCH_MAX_OBJECT_BYTES} a "
                "batch store takes",
                "store it alone (/store)",
            )
        if total > wire.STORE_BATCH_MAX_BYTES:
            raise BadRequest(
                f"a batch store may carry at most {wire.STORE_BATCH_MAX_BYTES} bytes of objects",
                "split it into several requests",
            )
        assert isinstance(sha1, str)
        yield sha1.lower(), await body.exactly(size, f"sha1://{sha1}")
    if not await body.at_end():
        raise BadRequest("bytes after the 'finished' frame of a batch store")
