"""A node that answers batch downloads dishonestly, for tests (run as its own process).

    python tests/batch_proxy.py MODE UPSTREAM_PORT

Listens on a free 127.0.0.1 port, prints it on one line, and relays every request to the
real node on 127.0.0.1:UPSTREAM_PORT unchanged, except `POST /downloadFiles`, whose honest
answer it alters by MODE (and the batch stores, for the modes that say so):

    wrong      one byte of the first object flipped (size unchanged)
    extra      three bytes more after the first object than its header says
    truncate   the answer cut off in the middle of the first object
    oversize   the first object's header announces one byte more than it has
    stranger   a header naming an object that was not asked for
    unfinished the final `finished` frame left out
    old        404 with the error type aiohttp gives an unknown route (a node before batches),
               for `/downloadFiles`, `/storeFiles` and `/storeLocalFiles`
    storehash  the first item of a `/storeFiles` or `/storeLocalFiles` answer names another
               object's hash

It runs until killed.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Awaitable, Callable, List, Tuple

from mitm_proxy import Relayed, serve_http

from kachery_core.protocol.wire import encode_frame

OLD_ROUTES = ("/downloadFiles", "/storeFiles", "/storeLocalFiles")


def split(body: bytes) -> List[Tuple[dict, bytes]]:
    """The honest answer as (frame, bytes after it) pairs."""
    parts: List[Tuple[dict, bytes]] = []
    while body:
        length, _, rest = body.partition(b"#")
        frame = json.loads(rest[: int(length)])
        body = rest[int(length) :]
        size = frame.get("size", 0) if frame.get("type") == "file" else 0
        parts.append((frame, body[:size]))
        body = body[size:]
    return parts


def join(parts: List[Tuple[dict, bytes]]) -> bytes:
    return b"".join(encode_frame(frame) + data for frame, data in parts)


def alter(mode: str, body: bytes) -> bytes:
    parts = split(body)
    first = next(i for i, (frame, _) in enumerate(parts) if frame.get("type") == "file")
    frame, data = parts[first]
    if mode == "wrong":
        parts[first] = (frame, bytes([data[0] ^ 1]) + data[1:])
    elif mode == "extra":
        parts[first] = (frame, data + b"xyz")
    elif mode == "oversize":
        parts[first] = (dict(frame, size=frame["size"] + 1), data + b"!")
    elif mode == "stranger":
        parts[first] = (dict(frame, sha1="5" * 40), data)
    elif mode == "unfinished":
        parts = [(f, d) for f, d in parts if f.get("type") != "finished"]
    elif mode == "truncate":
        cut = join(parts[:first]) + join([(frame, b"")]) + data[: len(data) // 2]
        return cut
    return join(parts)


def run(mode: str, upstream_port: int) -> None:
    from aiohttp import web

    async def answer(request: Any, relay: Callable[[Any], Awaitable[Relayed]]) -> Any:
        if mode == "old" and request.path in OLD_ROUTES:
            return web.Response(
                status=404, text="404: Not Found", headers={"KACHERY-ERROR-TYPE": "notFound"}
            )
        status, data, kept = await relay(request)
        if mode == "storehash" and status == 200 and request.path in OLD_ROUTES[1:]:
            doc = json.loads(data)
            doc["stored"][0]["sha1"] = "5" * 40
            data = json.dumps(doc).encode()
        if status == 200 and request.path == "/downloadFiles":
            data = alter(mode, data)
            if mode == "truncate":  # send what there is, then drop the connection
                response = web.StreamResponse(headers=kept)
                await response.prepare(request)
                await response.write(data)
                assert request.transport is not None
                request.transport.close()
                return response
        return web.Response(status=status, body=data, headers=kept)

    serve_http(upstream_port, answer)


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
