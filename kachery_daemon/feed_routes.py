"""The node's routes for mutables (`/mutable/*`) and feeds (`/feed/*`).

Store calls are short SQLite operations run on a worker thread. `watchForNewMessages` is a
long poll: it answers at once when any watched subfeed has messages past its position, else
waits (on an asyncio event that appends set, never by polling the database) until one
does or `waitMsec` runs out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from aiohttp import web

from .feeds import FeedStore, check_feed_id
from .http_util import BadRequest, field, read_json_object
from .mutables import MutableStore

T = TypeVar("T")
MAX_WAIT_MSEC = 120_000
Watch = Tuple[str, str, str, int]
"""(watch name, feed ID, subfeed hash, position)."""


class Appended:
    """Wakes long polls when a subfeed gets messages (shared by the HTTP and gRPC APIs)."""

    def __init__(self) -> None:
        self._events: Dict[Tuple[str, str], asyncio.Event] = {}

    def event(self, feed_id: str, subfeed: str) -> asyncio.Event:
        return self._events.setdefault((feed_id, subfeed), asyncio.Event())

    def notify(self, feed_id: str, subfeed: str) -> None:
        event = self._events.pop((feed_id, subfeed), None)
        if event is not None:
            event.set()


async def _run(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def wait_for_messages(
    feeds: FeedStore,
    appended: Appended,
    watches: List[Watch],
    wait_msec: float,
    limit: int = 0,
    signed: bool = False,
) -> Dict[str, List[Any]]:
    """Messages past each watch's position, waiting up to `wait_msec` for at least one."""
    deadline = time.monotonic() + wait_msec / 1000.0
    while True:
        events = [appended.event(f, s) for _, f, s, _ in watches]
        found: Dict[str, List[Any]] = {}
        for name, feed_id, subfeed, position in watches:
            messages = await _run(feeds.messages, feed_id, subfeed, position, limit, signed)
            if messages:
                found[name] = messages
        remaining = deadline - time.monotonic()
        if found or remaining <= 0 or not events:
            return found
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        done, pending = await asyncio.wait(
            waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()


def add_mutable_and_feed_routes(
    app: web.Application,
    mutables: MutableStore,
    feeds: FeedStore,
    appended: Optional[Appended] = None,
) -> None:
    """`appended` wakes long polls; pass the node's own to share it with its gRPC API."""
    notifier = appended if appended is not None else Appended()
    run = _run

    async def mutable_get(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        found, value = await run(mutables.get, _key(doc))
        return web.json_response({"success": True, "found": found, "value": value})

    async def mutable_set(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        if "value" not in doc:
            raise BadRequest("missing field 'value'")
        ok = await run(mutables.set, _key(doc), doc["value"], field(doc, "update", bool, True))
        return web.json_response({"success": ok})

    async def mutable_delete(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        return web.json_response({"success": await run(mutables.delete, _key(doc))})

    async def create_feed(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        feed_id = await run(feeds.create_feed, field(doc, "feedName", str, None))
        return web.json_response({"success": True, "feedId": feed_id})

    async def delete_feed(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        await run(feeds.delete_feed, _feed_id(doc))
        return web.json_response({"success": True})

    async def get_feed_id(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        feed_id = await run(feeds.get_feed_id, field(doc, "feedName", str))
        return web.json_response({"success": feed_id is not None, "feedId": feed_id})

    async def get_feed_info(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        writeable = await run(feeds.is_writeable, _feed_id(doc))
        return web.json_response({"success": True, "isWriteable": writeable})

    async def append_messages(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        feed_id, subfeed = _feed_id(doc), _subfeed(doc)
        messages = field(doc, "messages", list)
        await run(feeds.append_messages, feed_id, subfeed, messages)
        notifier.notify(feed_id, subfeed)
        return web.json_response({"success": True})

    async def num_messages(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        count = await run(feeds.num_messages, _feed_id(doc), _subfeed(doc))
        return web.json_response({"success": True, "numMessages": count})

    async def watch(request: web.Request) -> web.Response:
        doc = await read_json_object(request)
        raw_watches = field(doc, "subfeedWatches", dict)
        wait_msec = field(doc, "waitMsec", (int, float), 0)
        if not 0 <= wait_msec <= MAX_WAIT_MSEC:
            raise BadRequest(f"waitMsec must be from 0 to {MAX_WAIT_MSEC}, not {wait_msec}")
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
        found = await wait_for_messages(feeds, notifier, watches, wait_msec, limit, signed)
        return web.json_response({"success": True, "messages": found})

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


def _key(doc: Dict[str, Any]) -> Any:
    if "key" not in doc or doc["key"] is None:
        raise BadRequest("missing field 'key'")
    return doc["key"]


def _feed_id(doc: Dict[str, Any]) -> str:
    return check_feed_id(field(doc, "feedId", str))


def _subfeed(doc: Dict[str, Any]) -> str:
    return check_subfeed_hash(field(doc, "subfeedHash", str))


def check_subfeed_hash(value: str) -> str:
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise BadRequest(f"subfeedHash must be 40 lowercase hex digits, not {value[:60]!r}")
    return value
