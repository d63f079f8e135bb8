"""The node's HTTP routes for mutables (`/mutable/*`) and feeds (`/feed/*`).

Each parses its JSON body and calls the `Node`. `watchForNewMessages` is a long poll: it
answers at once when any watched subfeed has messages past its position, else waits (see
`feed_watch`: woken by appends, never by polling the database) until one does or
`waitMsec` (at most `MAX_WAIT_MSEC`; a longer one is cut to it) runs out. The answer names
every watch, `[]` for one without new messages, and is bounded (`feed_watch`: a caller
pages through a long backlog); it is joined from the messages' stored JSON off the loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

from aiohttp import web

from .feed_watch import Watch, answer_json, check_watch_count, watch_answer
from .feeds import check_feed_id, check_subfeed_hash
from .http_util import BadRequest, field, read_json_object
from .node import Node

WRITE_PIECE = 64 << 10
"""Bytes of a watch answer handed to the socket at a time."""
WRITE_SECONDS = 30.0
"""A watch answer not taken by its reader within this is dropped with its connection."""


def add_mutable_and_feed_routes(app: web.Application, node: Node) -> None:
    async def mutable_get(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        found, value = await node.get_mutable(_key(doc))
        return web.json_response({"success": True, "found": found, "value": value})

    async def mutable_set(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        if "value" not in doc:
            raise BadRequest("missing field 'value'")
        ok = await node.set_mutable(_key(doc), doc["value"], field(doc, "update", bool, True))
        return web.json_response({"success": ok})

    async def mutable_delete(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        return web.json_response({"success": await node.delete_mutable(_key(doc))})

    async def create_feed(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        feed_id = await node.create_feed(field(doc, "feedName", str, None))
        return web.json_response({"success": True, "feedId": feed_id})

    async def delete_feed(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        await node.delete_feed(_feed_id(doc))
        return web.json_response({"success": True})

    async def get_feed_id(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        feed_id = await node.get_feed_id(field(doc, "feedName", str))
        return web.json_response({"success": feed_id is not None, "feedId": feed_id})

    async def get_feed_info(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        writeable = await node.feed_is_writeable(_feed_id(doc))
        return web.json_response({"success": True, "isWriteable": writeable})

    async def append_messages(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        feed_id, subfeed = _feed_id(doc), _subfeed(doc)
        await node.append_messages(feed_id, subfeed, field(doc, "messages", list))
        return web.json_response({"success": True})

    async def num_messages(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        count = await node.num_messages(_feed_id(doc), _subfeed(doc))
        return web.json_response({"success": True, "numMessages": count})

    async def watch(request: web.Request) -> web.StreamResponse:
        doc = await read_json_object(request)
        raw_watches = field(doc, "subfeedWatches", dict)
        check_watch_count(len(raw_watches))
        wait_msec = field(doc, "waitMsec", (int, float), 0)
        if not wait_msec >= 0:  # NaN too; a wait over MAX_WAIT_MSEC is cut to it
            raise BadRequest(f"waitMsec must be 0 or more, not {wait_msec}")
        limit = field(doc, "maxNumMessages", int, 0)
        signed = field(doc, "signed", bool, False)
        watches: List[Watch] = []
        for name, watch_doc in raw_watches.items():
            if not isinstance(watch_doc, dict):
                raise BadRequest(f"subfeedWatches[{name!r}] must be an object")
            position = field(watch_doc, "position", int, 0)
            if position < 0:
                raise BadRequest(f"subfeedWatches[{name!r}].position must not be negative")
            watches.append((name, _feed_id(watch_doc), _subfeed(watch_doc), position))
        async with watch_answer(
            node.feeds, node.appended, watches, wait_msec, limit, signed
        ) as found:  # holds an answer slot until the answer is sent
            body = await asyncio.get_running_loop().run_in_executor(None, answer_json, found)
            found.clear()  # only the encoded answer is kept while it is written
            return await _write_answer(request, body)

    for path, handler in [
        ("/mutable/get", mutable_get),
        ("/mutable/set", mutable_set),
        ("/mutable/delete", mutable_delete),
        ("/feed/createFeed", create_feed),
        ("/feed/deleteFeed", delete_feed),
        ("/feed/getFeedId", get_feed_id),
        ("/feed/getFeedInfo", get_feed_info),
        ("/feed/appendMessages", append_messages),
        ("/feed/getNumLocalMessages", num_messages),
        ("/feed/watchForNewMessages", watch),
    ]:
        app.router.add_post(path, handler)


async def _write_answer(request: web.Request, body: bytes) -> web.StreamResponse:
    """Write a watch answer a piece at a time, each once the last has left for the socket,
    so a reader that does not read holds one answer, not a copy of it in the write buffer."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)

    async def send() -> None:
        await response.prepare(request)
        view = memoryview(body)
        for start in range(0, len(view), WRITE_PIECE):
            await response.write(view[start : start + WRITE_PIECE])  # waits for a drain
        await response.write_eof()

    try:
        await asyncio.wait_for(send(), WRITE_SECONDS)
    except asyncio.TimeoutError:  # an answer nobody reads gives its slot back
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("a watch answer was not read in time") from None
    return response


def _key(doc: Dict[str, Any]) -> Any:
    if "key" not in doc or doc["key"] is None:
        raise BadRequest("missing field 'key'")
    return doc["key"]


def _feed_id(doc: Dict[str, Any]) -> str:
    return check_feed_id(field(doc, "feedId", str))


def _subfeed(doc: Dict[str, Any]) -> str:
    return check_subfeed_hash(field(doc, "subfeedHash", str))
