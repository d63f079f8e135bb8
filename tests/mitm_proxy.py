"""A hostile proxy between a client and a real node, for tests (run as its own process).

    python tests/mitm_proxy.py http UPSTREAM_PORT MARKER_PATH
    python tests/mitm_proxy.py grpc UPSTREAM_PORT MARKER_PATH

It listens on a free 127.0.0.1 port, prints that port on one line, and forwards every
request to the node on 127.0.0.1:UPSTREAM_PORT, unchanged, including the probe (so a node
ID check with a signed probe still passes). It alters only what comes back: the bytes of
every read are replaced by a pickle that, when loaded, creates MARKER_PATH, and the hash in
every store or link answer is replaced by another object's. It runs until killed.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from typing import Any, Awaitable, Callable, Dict, Iterator, Tuple

OTHER_SHA1 = hashlib.sha1(b"another object entirely").hexdigest()


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def evil_pickle(marker: str) -> bytes:
    return pickle.dumps(_Marker(marker), protocol=4)


# -- HTTP ---------------------------------------------------------------------------------

READS = {"/downloadFileData"}
STORES = {"/store", "/storeFile", "/linkFile"}
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


Relayed = Tuple[int, bytes, Dict[str, str]]
"""The node's honest answer: status, body, and the headers worth passing on."""


def serve_http(
    upstream_port: int, answer: Callable[[Any, Callable[[Any], Awaitable[Relayed]]], Awaitable[Any]]
) -> None:
    """Listen on a free loopback port (printed), and answer each request with
    `await answer(request, relay)`; `await relay(request)` gives the node's honest answer.
    Runs until killed. Shared by this proxy and tests/batch_proxy.py."""
    import asyncio

    import aiohttp
    from aiohttp import web

    upstream = f"http://127.0.0.1:{upstream_port}"

    async def relay(request: web.Request) -> Relayed:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with aiohttp.ClientSession(auto_decompress=True) as session, session.request(
            request.method, upstream + request.path_qs, data=body, headers=headers
        ) as response:
            data = await response.read()
            kept = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
            return response.status, data, kept

    async def handle(request: web.Request) -> web.StreamResponse:
        return await answer(request, relay)

    async def main() -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def run_http(upstream_port: int, marker: str) -> None:
    from aiohttp import web

    evil = evil_pickle(marker)

    async def answer(request: Any, relay: Callable[[Any], Awaitable[Relayed]]) -> Any:
        status, data, kept = await relay(request)
        if status == 200 and request.path in READS:
            data = evil
        elif status == 200 and request.path in STORES:
            doc = json.loads(data)
            if doc.get("sha1"):
                doc["sha1"] = OTHER_SHA1
            data = json.dumps(doc).encode()
        return web.Response(status=status, body=data, headers=kept)

    serve_http(upstream_port, answer)


# -- gRPC ---------------------------------------------------------------------------------


def run_grpc(upstream_port: int, marker: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from kachery_core.grpc_api import kachery_pb2 as pb
    from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{upstream_port}")
    stub = pb_grpc.KacheryStub(channel)
    evil = evil_pickle(marker)

    def passing(context: Any, call: Any) -> Any:
        try:
            return call(tuple(context.invocation_metadata()))
        except grpc.RpcError as exc:
            context.set_trailing_metadata(exc.trailing_metadata() or ())
            context.abort(exc.code(), exc.details() or "")

    def altered_stream(context: Any, call: Any) -> Iterator[Any]:
        upstream_messages = passing(context, call)
        try:
            for _ in upstream_messages:  # the node's honest bytes, dropped
                pass
        except grpc.RpcError as exc:
            context.set_trailing_metadata(exc.trailing_metadata() or ())
            context.abort(exc.code(), exc.details() or "")
        yield pb.DataChunk(data=evil, total_size=len(evil))

    def altered_reply(reply: Any) -> Any:
        return pb.StoredReply(sha1=OTHER_SHA1, size=reply.size, manifest_sha1=reply.manifest_sha1)

    class Proxy(pb_grpc.KacheryServicer):  # type: ignore[misc]
        def Probe(self, request: Any, context: Any) -> Any:
            return passing(context, lambda md: stub.Probe(request, metadata=md))

        def Load(self, request: Any, context: Any) -> Iterator[Any]:
            return altered_stream(context, lambda md: stub.Load(request, metadata=md))

        def ReadRange(self, request: Any, context: Any) -> Iterator[Any]:
            return altered_stream(context, lambda md: stub.ReadRange(request, metadata=md))

        def Store(self, request_iterator: Any, context: Any) -> Any:
            reply = passing(context, lambda md: stub.Store(request_iterator, metadata=md))
            return altered_reply(reply)

        def Link(self, request: Any, context: Any) -> Any:
            reply = passing(context, lambda md: stub.Link(request, metadata=md))
            return altered_reply(reply)

    server = grpc.server(ThreadPoolExecutor(8))
    pb_grpc.add_KacheryServicer_to_server(Proxy(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    mode, upstream, marker_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    (run_http if mode == "http" else run_grpc)(upstream, marker_path)
