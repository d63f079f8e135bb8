"""An honest proxy that sends half of one download and then stalls (its own process).

    python tests/stall_proxy.py UPSTREAM_PORT SHA1 STALLED_PATH

Listens on a free 127.0.0.1 port, prints it on one line, and relays every request to the
node on 127.0.0.1:UPSTREAM_PORT unchanged, except the first `/downloadFileData` request
that names SHA1: its answer is the node's, but only the first half of the body is sent;
then the proxy creates STALLED_PATH and sends nothing more. A test thereby interrupts a
client in the middle of a download, with part of the bytes already written. It runs until
killed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable, Callable

from mitm_proxy import Relayed, serve_http


def run(upstream_port: int, sha1: str, stalled: str) -> None:
    from aiohttp import web

    held = {"done": False}

    async def answer(request: Any, relay: Callable[[Any], Awaitable[Relayed]]) -> Any:
        wanted = request.path == "/downloadFileData" and sha1 in await request.text()
        status, data, kept = await relay(request)
        if not wanted or held["done"] or status != 200:
            return web.Response(status=status, body=data, headers=kept)
        held["done"] = True
        response = web.StreamResponse(status=status, headers=kept)
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        with open(stalled, "w"):
            pass
        await asyncio.Event().wait()  # the rest never comes
        return response

    serve_http(upstream_port, answer)


if __name__ == "__main__":
    run(int(sys.argv[1]), sys.argv[2], sys.argv[3])
