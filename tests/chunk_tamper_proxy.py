"""A proxy that flips one byte of one chunk on its way from a node (run as its own process).

    python tests/chunk_tamper_proxy.py UPSTREAM_PORT START_BYTE

Everything is forwarded unchanged (probe included) except the answer to a `/downloadFileData`
request whose `startByte` is START_BYTE: one byte in the middle of it is flipped. So a client
reading a large file by chunk gets every chunk honestly but the one starting there.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Awaitable, Callable

from mitm_proxy import Relayed, serve_http


def run(upstream_port: int, start_byte: int) -> None:
    from aiohttp import web

    async def answer(request: Any, relay: Callable[[Any], Awaitable[Relayed]]) -> Any:
        body = await request.read()
        status, data, kept = await relay(request)
        if status == 200 and request.path == "/downloadFileData" and data:
            doc = json.loads(body)
            if int(doc.get("startByte", 0)) == start_byte:
                flipped = bytearray(data)
                flipped[len(flipped) // 2] ^= 0x01
                data = bytes(flipped)
        return web.Response(status=status, body=data, headers=kept)

    serve_http(upstream_port, answer)


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    run(int(sys.argv[1]), int(sys.argv[2]))
