"""Limits on the node's HTTP connections, so slow or hostile peers cannot starve it.

Without them, a peer that opens connections and sends half a request keeps each one (and a
file descriptor) forever; with enough of them the node runs out of descriptors and cannot
even answer `/probe`. So:

* header timeout: a connection must send its first request line and headers within
  `header_seconds` of being accepted, else it is closed;
* keep-alive timeout: an idle kept-alive connection is closed after `keepalive_seconds`
  (aiohttp's own `keepalive_timeout`; it also covers the headers of later requests);
* body timeouts: an upload (or JSON body) that sends no byte for `body_idle_seconds`, or
  that falls below `body_min_rate` bytes per second on average after a head start
  (`body_idle_seconds` for uploads, the shorter `json_body_seconds` for JSON bodies), is
  answered 408 and its connection closed (see `http_util.read_piece`);
* write timeout: an answer nobody reads cannot hold a connection. A connection with
  answer bytes waiting (in the transport's buffer or the kernel's send queue) of which
  the peer acknowledges none for `write_seconds` is aborted (`check_writing`; the
  kernel's queue matters: pipelined requests whose answers sit there leave aiohttp idle,
  kept alive). Downloads sent by sendfile also time out piece by piece (`http_api`);
* connection cap: at most `max_connections` open at once. At the cap, a new connection
  first makes room by closing the oldest connection that has not finished its first
  request head (such a peer has had nothing yet, and a slow one may be an attack), as
  nginx drains reusable connections; only when there is none is the new connection
  answered at once with a canned 503 ("the node has too many open connections") and
  closed, without being read, so it holds a descriptor only for that instant.

The guard is a thin asyncio protocol in front of aiohttp's own per-connection protocol
(`GuardedProtocol`): it counts connections, starts the header timer, watches the bytes for
the end of the first request head, checks unsent answers once a tick (`ConnectionGuard.
_sweep`), and otherwise passes every call straight through. It
also lets the original client's empty upload through (`empty_upload`): it holds back the
first request's bytes while they may still be that, and rewrites it if they are.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

try:  # Linux: the kernel's send queue, for the write timeout
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not on this platform
    termios = None  # type: ignore[assignment]

from aiohttp import web

from kachery_core.protocol import wire

from . import empty_upload
from .http_log import name_peer
from .limit_defaults import (
    DEFAULT_BODY_IDLE_SECONDS,
    DEFAULT_BODY_MIN_RATE,
    DEFAULT_HEADER_SECONDS,
    DEFAULT_JSON_BODY_SECONDS,
    DEFAULT_KEEPALIVE_SECONDS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WRITE_SECONDS,
)

FD_RESERVE_FRACTION = 2
"""By default the cap is at most half the open-file limit: the rest is for files, SQLite,
gRPC and the listening sockets."""
FD_BASE_RESERVE = 48
"""Descriptors a node uses besides its connections (logs, databases and the storage index,
listening sockets, templates being read)."""
BURST_SHARE = 3
"""The accept burst is at most a third of what is left: a burst's connections hold their
descriptors before they are counted, and those closed to make room for them hold theirs
until the loop closes them, so a burst can briefly need twice its size."""
MIN_BACKLOG = 8

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
    write_seconds: float = DEFAULT_WRITE_SECONDS
    json_body_seconds: float = DEFAULT_JSON_BODY_SECONDS
    body_min_rate: float = DEFAULT_BODY_MIN_RATE

    def connection_cap(self) -> int:
        if self.max_connections is not None:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return DEFAULT_MAX_CONNECTIONS
        return max(1, min(DEFAULT_MAX_CONNECTIONS, soft // FD_RESERVE_FRACTION))

    def accept_backlog(self, cap: int, wanted: int) -> int:
        """The listen backlog, at most `wanted`. asyncio accepts up to that many connections
        at once before any is counted, and a connection closed to make room frees its
        descriptor only after that: under a low open-file limit the burst must fit beside
        the cap, or accept fails with "Too many open files"."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return wanted
        spare = soft - cap - FD_BASE_RESERVE
        return max(MIN_BACKLOG, min(wanted, spare // BURST_SHARE))


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
        self.evicted = 0
        self.live: Dict[GuardedProtocol, None] = {}
        """Counted connections, for the write-timeout sweep."""
        self.heads: Dict[GuardedProtocol, None] = {}
        """Counted connections still sending their first head, oldest first."""
        self.sweep: Optional[asyncio.TimerHandle] = None

    def __call__(self) -> asyncio.Protocol:
        return GuardedProtocol(self)

    def make_room(self) -> bool:
        """At the cap: close the oldest connection without a complete first head."""
        if not self.heads:
            return False
        victim = next(iter(self.heads))
        victim.release()
        self.evicted += 1
        if isinstance(victim.transport, asyncio.WriteTransport):
            victim.transport.abort()
        return True

    def add(self, protocol: GuardedProtocol) -> None:
        self.open += 1
        self.live[protocol] = None
        self.heads[protocol] = None
        if self.sweep is None:
            self._schedule()

    def _schedule(self) -> None:
        tick = min(1.0, self.limits.write_seconds / 4)
        self.sweep = asyncio.get_running_loop().call_later(tick, self._sweep)

    def _sweep(self) -> None:
        """Abort connections whose answer has been stuck for `write_seconds`."""
        self.sweep = None
        now = time.monotonic()
        for protocol in list(self.live):
            protocol.check_writing(now, self.limits.write_seconds)
        if self.live:
            self._schedule()


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
        self.paused = False
        self.stuck_since: Optional[float] = None
        """Since when an answer has waited for the peer to read it (`check_writing`)."""
        self.acked = -1  # bytes the peer has acknowledged, at the last check

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        self.transport = transport
        if guard.open >= guard.cap and not guard.make_room():
            guard.refused += 1
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(busy_answer(guard.cap))
            transport.close()
            return
        guard.add(self)
        self.counted = True
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(guard.limits.header_seconds, self._head_too_slow)
        self.inner = guard.make()
        name_peer(self.inner, transport)
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
        self.paused = True
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.paused = False
        self.stuck_since = None  # the peer read a good part of the answer
        if self.inner is not None:
            self.inner.resume_writing()

    def check_writing(self, now: float, write_seconds: float) -> None:
        """Abort the connection if its answer has not moved for `write_seconds`.

        An answer is waiting while bytes are unsent in the transport's buffer or in the
        kernel's send queue (an idle kept-alive connection may have megabytes there); it
        moves when the peer acknowledges more bytes, which it does only as it reads. Where
        the kernel does not say (`_kernel_queue` is None), a paused or closing transport
        with bytes left counts as waiting, and resuming as moving.
        """
        transport = self.transport
        if not isinstance(transport, asyncio.WriteTransport):
            return
        unsent = transport.get_write_buffer_size()
        kernel = _kernel_queue(transport)
        if kernel is not None:
            queued, acked = kernel
            waiting, moved = unsent + queued > 0, acked != self.acked
            self.acked = acked
        else:
            waiting, moved = unsent > 0 and (self.paused or transport.is_closing()), False
        if not waiting or moved:
            self.stuck_since = None
        elif self.stuck_since is None:
            self.stuck_since = now
        elif now - self.stuck_since >= write_seconds:
            self.release()
            transport.abort()

    def release(self) -> None:
        """No longer counted against the cap (closed, or about to be)."""
        self._stop_timer()
        if self.counted:
            self.guard.open -= 1
            self.counted = False
        self.guard.live.pop(self, None)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.release()
        self._stop_settle()
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
        self.guard.heads.pop(self, None)


_TCP_INFO_ACKED = struct.Struct("=Q")
_TCP_INFO_ACKED_AT = 120
"""Where `tcpi_bytes_acked` is in Linux's `struct tcp_info` (Linux 4.1 and later)."""


def _kernel_queue(transport: asyncio.WriteTransport) -> Optional[Tuple[int, int]]:
    """(bytes in the socket's send queue, bytes the peer acknowledged so far), or None
    where the system does not tell (not Linux, not TCP)."""
    sock = transport.get_extra_info("socket")
    tcp_info = getattr(socket, "TCP_INFO", None)
    if sock is None or tcp_info is None or termios is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 256)
        if len(info) < _TCP_INFO_ACKED_AT + _TCP_INFO_ACKED.size:
            return None
        (acked,) = _TCP_INFO_ACKED.unpack_from(info, _TCP_INFO_ACKED_AT)
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        return struct.unpack("=i", queued)[0], acked
    except (OSError, ValueError):
        return None


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
        self.guard = guard = ConnectionGuard(server, self._limits)
        loop = asyncio.get_running_loop()
        backlog = self._limits.accept_backlog(guard.cap, self._backlog)
        self._server = await loop.create_server(
            guard, self._host, self._port, ssl=self._ssl_context, backlog=backlog
        )
