"""An honest proxy that holds the first download until a test says go (its own process).

    python tests/pause_proxy.py UPSTREAM_PORT SHA1 PAUSED_PATH GO_PATH

Listens on a free 127.0.0.1 port, prints it on one line, and relays every request to the
node on 127.0.0.1:UPSTREAM_PORT unchanged. The first `/downloadFiles` or
`/downloadFileData` request that names SHA1 is held: the proxy creates PAUSED_PATH, waits
until GO_PATH exists, then relays it. A test thereby changes the client's files at a known moment in the
middle of a load. It runs until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Awaitable, Callable

from mitm_proxy import Relayed, serve_http

DOWNLOADS = {"/downloadFiles", "/downloadFileData"}


def run(upstream_port: int, sha1: str, paused: str, go: str) -> None:
    from aiohttp import web

    held = {"done": False}

    async def answer(request: Any, relay: Callable[[Any], Awaitable[Relayed]]) -> Any:
        if request.path in DOWNLOADS and not held["done"] and sha1 in await request.text():
            held["done"] = True
            with open(paused, "w"):
                pass
            while not os.path.exists(go):
                await asyncio.sleep(0.02)
        status, data, kept = await relay(request)
        return web.Response(status=status, body=data, headers=kept)

    serve_http(upstream_port, answer)


if __name__ == "__main__":
    run(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
