"""Limits on the node's HTTP connections, so slow or hostile peers cannot starve it.

Without them, a peer that opens connections and sends half a request keeps each one (and a
file descriptor) forever; with enough of them the node runs out of descriptors and cannot
even answer `/probe`. So:

* header timeout: a connection must send its first request line and headers within
  `header_seconds` of being accepted, else it is closed;
* keep-alive timeout: an idle kept-alive connection is closed after `keepalive_seconds`
  (aiohttp's own `keepalive_timeout`; it also covers the headers of later requests);
* body idle timeout: an upload (or JSON body) that sends no byte for `body_idle_seconds`
  is answered 408 (see `http_util.read_piece`);
* connection cap: at most `max_connections` open at once. A connection beyond the cap is
  answered at once with a canned 503 ("the node has too many open connections") and
  closed, without being read, so it holds a descriptor only for that instant; once other
  connections close (or time out), new ones are served again.

The guard is a thin asyncio protocol in front of aiohttp's own per-connection protocol
(`GuardedProtocol`): it counts connections, starts the header timer, watches the bytes for
the end of the first request head, and otherwise passes every call straight through. It
also lets the original client's empty upload through (`empty_upload`): it holds back the
first request's bytes while they may still be that, and rewrites it if they are.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
from dataclasses import dataclass
from typing import Callable, Optional

from aiohttp import web

from kachery_core.protocol import wire

from . import empty_upload

DEFAULT_HEADER_SECONDS = 10.0
DEFAULT_BODY_IDLE_SECONDS = 60.0
DEFAULT_KEEPALIVE_SECONDS = 75.0
DEFAULT_MAX_CONNECTIONS = 1000
FD_RESERVE_FRACTION = 2
"""By default the cap is at most half the open-file limit: the rest is for files, SQLite,
gRPC and the listening sockets."""

_END_OF_HEAD = b"\r\n\r\n"
_BUSY = (
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    f"{wire.ERROR_TYPE_HEADER}: unreachable\r\n"
    "Retry-After: 1\r\n"
    "Connection: close\r\n"
    "Content-Length: {length}\r\n"
    "\r\n"
    "{text}"
)


@dataclass(frozen=True)
class ServerLimits:
    """The node's connection limits (`kachery-daemon start --help`); None: the default."""

    header_seconds: float = DEFAULT_HEADER_SECONDS
    body_idle_seconds: float = DEFAULT_BODY_IDLE_SECONDS
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS
    max_connections: Optional[int] = None
    """None: DEFAULT_MAX_CONNECTIONS, or half the process's open-file limit if lower."""

    def connection_cap(self) -> int:
        if self.max_connections is not None:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return DEFAULT_MAX_CONNECTIONS
        return max(1, min(DEFAULT_MAX_CONNECTIONS, soft // FD_RESERVE_FRACTION))


def busy_answer(cap: int) -> bytes:
    text = f"the node has too many open connections (its limit is {cap}); try again shortly\n"
    return _BUSY.format(length=len(text.encode()), text=text).encode()


class ConnectionGuard:
    """A protocol factory for `loop.create_server` that wraps aiohttp's own (`make`)."""

    def __init__(self, make: Callable[[], asyncio.Protocol], limits: ServerLimits) -> None:
        self.make = make
        self.limits = limits
        self.cap = limits.connection_cap()
        self.open = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        return GuardedProtocol(self)


class GuardedProtocol(asyncio.Protocol):
    """One connection: counted, refused when over the cap, closed if its head is slow."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: Optional[asyncio.Protocol] = None
        self.transport: Optional[asyncio.BaseTransport] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.tail = b""  # the last bytes seen, while looking for the end of the first head
        self.counted = False
        self.held: Optional[bytes] = b""
        """The first bytes, held back while they may be `empty_upload`'s case; None after."""
        self.dropping = False  # the empty upload was passed on: the rest is not read
        self.settle: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        self.transport = transport
        if guard.open >= guard.cap:
            guard.refused += 1
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(busy_answer(guard.cap))
            transport.close()
            return
        guard.open += 1
        self.counted = True
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(guard.limits.header_seconds, self._head_too_slow)
        self.inner = guard.make()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return  # refused: the answer is on its way, the request is not read
        if self.timer is not None:
            seen = self.tail + data
            if _END_OF_HEAD in seen:
                self._stop_timer()
            else:
                self.tail = seen[-3:]
        if self.held is not None:
            data = self._first_bytes(data)
        if data and not self.dropping:
            self.inner.data_received(data)

    def _first_bytes(self, data: bytes, settled: bool = False) -> bytes:
        """What to pass on of the connection's first bytes (see `empty_upload`)."""
        held = (self.held or b"") + data
        decision = empty_upload.decide(held, settled)
        if isinstance(decision, empty_upload.Wait) and not settled:
            self.held = held
            if self.settle is None and empty_upload.head_is_complete(held):
                loop = asyncio.get_running_loop()
                self.settle = loop.call_later(empty_upload.SETTLE_SECONDS, self._settled)
            return b""
        self.held = None
        self._stop_settle()
        if not isinstance(decision, bytes):
            return held
        self.dropping = True  # answered, then closed (Connection: close); the rest is dropped
        assert self.inner is not None
        self.inner.data_received(decision)
        return b""

    def _settled(self) -> None:
        """Nothing came for a while after a head that may be the empty upload: decide."""
        self.settle = None
        if self.held is not None and self.inner is not None:
            data = self._first_bytes(b"", settled=True)
            if data:
                self.inner.data_received(data)

    def _stop_settle(self) -> None:
        if self.settle is not None:
            self.settle.cancel()
            self.settle = None

    def eof_received(self) -> Optional[bool]:
        if self.inner is None:
            return None
        if self.held:
            held, self.held = self.held, None
            self._stop_settle()
            self.inner.data_received(held)
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._stop_timer()
        self._stop_settle()
        if self.counted:
            self.guard.open -= 1
            self.counted = False
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def _head_too_slow(self) -> None:
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.tail = b""


class GuardedSite(web.BaseSite):
    """aiohttp's TCP site, with every connection going through a `ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: ServerLimits,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._limits = limits
        self.guard: Optional[ConnectionGuard] = None

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, self._limits)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog
        )
