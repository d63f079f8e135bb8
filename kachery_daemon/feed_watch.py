"""Long polls on feeds: wait for messages past a position, woken by appends, not by polling.

`Appended` is one per node, shared by the HTTP and gRPC APIs, so an append through either
wakes a watch made through either.

As the original daemon did (and its clients expect): a longer wait than `MAX_WAIT_MSEC` is
not refused but cut to it (the original had no limit; a client asking for three minutes
gets an answer, empty or not, after two), and the answer names every watch, with `[]` for
one that has no new messages (client code does `messages[name]`).

An answer is bounded whatever the request asks: at most `MAX_WATCHES` watches (more are
refused), and at most `MAX_ANSWER_MESSAGES` messages and `MAX_ANSWER_CHARS` of message
text in all (one message larger than that comes alone: a message is at most 4 MiB, see
`feeds.MAX_MESSAGE_CHARS`). Each watch gets a prefix of its
new messages, watches in the order given, until the budget is spent; later ones get `[]`.
A caller moves each position on by what it got and asks again, so it pages through a
long backlog and still gets every message, in order. Messages are answered as their JSON
text, cut from the stored text on a worker thread (`collect`), never parsed on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from kachery_core.errors import InvalidInputError

from .feeds import FeedStore

T = TypeVar("T")
MAX_WAIT_MSEC = 120_000
"""The longest a watch waits; a longer `waitMsec` is cut to this (see the module docstring)."""
MAX_WATCHES = 1000
"""The most watches one request may name; more is refused (400 / INVALID_ARGUMENT)."""
MAX_ANSWER_MESSAGES = 10_000
"""The most messages one answer carries, over all its watches."""
MAX_ANSWER_CHARS = 256 << 10
"""The most message text (JSON) one answer carries, over all its watches."""
MAX_ANSWERS_AT_ONCE = 16
"""Watch answers read, held and being sent at once, over the node and both APIs."""
SLOT_WAIT_SECONDS = 5.0
"""How long a watch with messages waits for an answer slot before answering `[]`."""
Watch = Tuple[str, str, str, int]
"""(watch name, feed ID, subfeed hash, position)."""


class Appended:
    """Wakes long polls when a subfeed gets messages.

    A subfeed has an event only while some long poll watches it: `watching` counts the
    polls per subfeed and drops the event when the last one ends, so memory follows the
    polls in flight, not every subfeed ever watched.
    """

    def __init__(self) -> None:
        self._events: Dict[Tuple[str, str], asyncio.Event] = {}
        self._watchers: Dict[Tuple[str, str], int] = {}
        self._slots: Optional[asyncio.Semaphore] = None

    def answer_slots(self) -> asyncio.Semaphore:
        """The node's `MAX_ANSWERS_AT_ONCE` answer slots (made in the running loop)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_ANSWERS_AT_ONCE)
        return self._slots

    @property
    def watched(self) -> int:
        """How many subfeeds the node keeps a wake-up event for (those watched now)."""
        return len(self._events)

    @contextlib.contextmanager
    def watching(self, subfeeds: List[Tuple[str, str]]) -> Iterator[None]:
        """Count a long poll as watching `subfeeds` while the block runs."""
        keys = set(subfeeds)
        for key in keys:
            self._watchers[key] = self._watchers.get(key, 0) + 1
        try:
            yield
        finally:
            for key in keys:
                left = self._watchers[key] - 1
                if left:
                    self._watchers[key] = left
                else:
                    del self._watchers[key]
                    self._events.pop(key, None)

    def event(self, feed_id: str, subfeed: str) -> asyncio.Event:
        return self._events.setdefault((feed_id, subfeed), asyncio.Event())

    def notify(self, feed_id: str, subfeed: str) -> None:
        event = self._events.pop((feed_id, subfeed), None)
        if event is not None:
            event.set()


def check_watch_count(count: int) -> None:
    """`InvalidInputError` for a request naming more than `MAX_WATCHES` watches."""
    if count > MAX_WATCHES:
        raise InvalidInputError(
            f"a watch request names {count} watches, more than the node's limit of {MAX_WATCHES}",
            "watch the rest in another request",
        )


def collect(
    feeds: FeedStore, watches: List[Watch], limit: int, signed: bool
) -> Dict[str, List[str]]:
    """JSON texts of the messages past each watch's position, by watch name (only those
    with some), within the answer's budget (module docstring). Runs on a worker thread."""
    per_watch = limit if limit > 0 else MAX_ANSWER_MESSAGES
    messages_left, chars_left = MAX_ANSWER_MESSAGES, MAX_ANSWER_CHARS
    found: Dict[str, List[str]] = {}
    for name, feed_id, subfeed, position in watches:
        if messages_left <= 0 or chars_left <= 0:
            break
        texts = feeds.message_texts(  # only an answer's first message may pass its budget
            feed_id,
            subfeed,
            position,
            min(per_watch, messages_left),
            chars_left,
            signed,
            first_whatever_size=not found,
        )
        if texts:
            found[name] = texts
            messages_left -= len(texts)
            chars_left -= sum(len(t) for t in texts)
    return found


async def _run(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def any_new(feeds: FeedStore, watches: List[Watch]) -> bool:
    """Whether some watch has a message past its position (no message is read)."""
    checked = set()
    for _, feed_id, subfeed, position in watches:
        if (feed_id, subfeed, position) not in checked:
            checked.add((feed_id, subfeed, position))
            if feeds.has_message(feed_id, subfeed, position):
                return True
    return False


@contextlib.asynccontextmanager
async def watch_answer(
    feeds: FeedStore,
    appended: Appended,
    watches: List[Watch],
    wait_msec: float,
    limit: int = 0,
    signed: bool = False,
) -> AsyncIterator[Dict[str, List[str]]]:
    """The JSON texts of messages past each watch's position, by watch name (every name,
    `[]` for none), once one has some or `wait_msec` (at most `MAX_WAIT_MSEC`) ran out.

    The answer is held for the block, which sends it: one of `MAX_ANSWERS_AT_ONCE` slots
    is taken from when messages are read until the block ends, so the node's memory is a
    few answers however many watches there are; a watch that finds no slot free within
    `SLOT_WAIT_SECONDS` (or its own wait, if longer) answers `[]` everywhere, as a watch
    with nothing new does, and the caller asks again.
    """
    check_watch_count(len(watches))
    started = time.monotonic()
    deadline = started + min(wait_msec, MAX_WAIT_MSEC) / 1000.0
    with appended.watching([(f, s) for _, f, s, _ in watches]):
        ready = await _wait(feeds, appended, watches, deadline)
    empty: Dict[str, List[str]] = {name: [] for name, _, _, _ in watches}
    slots = appended.answer_slots()
    wait = max(SLOT_WAIT_SECONDS, deadline - time.monotonic())
    try:
        got_slot = ready and await asyncio.wait_for(slots.acquire(), wait)
    except asyncio.TimeoutError:
        got_slot = False
    if not got_slot:
        yield empty
        return
    try:
        found = await _run(collect, feeds, watches, limit, signed)
        empty.update(found)
        del found
        yield empty
    finally:
        slots.release()


async def wait_for_messages(
    feeds: FeedStore,
    appended: Appended,
    watches: List[Watch],
    wait_msec: float,
    limit: int = 0,
    signed: bool = False,
) -> Dict[str, List[str]]:
    """`watch_answer`, for an API that hands its answer on whole (gRPC)."""
    async with watch_answer(feeds, appended, watches, wait_msec, limit, signed) as found:
        return found


async def _wait(
    feeds: FeedStore, appended: Appended, watches: List[Watch], deadline: float
) -> bool:
    """Wait until some watch has a message past its position (True) or `deadline`."""
    while True:
        events = [appended.event(f, s) for _, f, s, _ in watches]
        if await _run(any_new, feeds, watches):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not events:
            return False
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        done, pending = await asyncio.wait(
            waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()


def answer_json(found: Dict[str, List[str]]) -> bytes:
    """The HTTP answer `{"success": true, "messages": {name: [message, ...]}}`, joined
    from the messages' JSON texts (never parsed again). For a worker thread."""
    parts = ['{"success":true,"messages":{']
    for i, (name, texts) in enumerate(found.items()):
        parts.append(("," if i else "") + json.dumps(name) + ":[" + ",".join(texts) + "]")
    parts.append("}}")
    return "".join(parts).encode("utf-8")
