"""Limits on the node's gRPC connections, inside the same open-file budget as HTTP.

Every accepted TCP connection holds a descriptor until it closes. Without a cap, idle
connections to the gRPC port can take every descriptor the process may have, and then
HTTP cannot accept either (not even `/probe`). So the gRPC port gets its own limits, the
same rules as HTTP's (connection_guard), enforced by grpc itself with server options:

* connection cap: at most `max_connections` open at once (`grpc.max_allowed_incoming_
  connections`); grpc closes a connection beyond it as soon as it is accepted. By default
  the cap is a quarter of what the HTTP cap leaves of the open-file limit (at most
  DEFAULT_MAX_CONNECTIONS), so HTTP's cap, gRPC's cap and the node's own files all fit;
* handshake timeout: a connection must finish the HTTP/2 handshake within
  `handshake_seconds` (the HTTP header timeout), else it is closed;
* idle timeout: a connection with no call in progress for `idle_seconds` (the HTTP
  keep-alive timeout) is closed (GOAWAY; a client reconnects on its next call);
* keepalive: the node pings a connection with calls in progress every KEEPALIVE_SECONDS and
  closes it if no answer comes within KEEPALIVE_TIMEOUT_SECONDS (a vanished peer, or one
  that stopped reading altogether); a client's own pings more often than every 5 minutes
  without data get it disconnected (grpc's ping strikes);
* streams: at most MAX_CONCURRENT_STREAMS calls at once per connection (a client queues
  the rest);
* message idle timeout: a call whose request message does not come within
  `message_idle_seconds` (the HTTP body idle timeout), or an upload stream (`Store`) that
  sends no message for that long, is ended with DEADLINE_EXCEEDED (`StreamStalled`); an
  upload's staging file is removed (grpc_service, `Node.store_upload`);
* write timeout: an answer stream (`Load`, `ReadRange`) that cannot send for
  `write_seconds`, because the client reads nothing, is ended and its file closed.

This module does not import grpc: the CLI and runner use it to compute the limits.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any, AsyncIterator, List, Optional, Tuple

from kachery_core.errors import InvalidInputError

DEFAULT_MAX_CONNECTIONS = 1000
GRPC_SHARE = 4
"""The default cap is 1/GRPC_SHARE of the open-file limit left once HTTP's cap is taken: the
rest is for the files that calls open (uploads, loads), SQLite and the listening sockets."""
MAX_CONCURRENT_STREAMS = 16
"""Calls at once per connection: a client runs 4 transfers at once; 16 leaves room."""
KEEPALIVE_SECONDS = 60.0
KEEPALIVE_TIMEOUT_SECONDS = 20.0
MIN_CLIENT_PING_SECONDS = 300.0
"""grpc's default: a client ping more often than this without data is a strike; two, GOAWAY."""


def default_connection_cap(http_cap: int) -> int:
    """The gRPC cap that fits beside an HTTP cap of `http_cap` in this process's open-file
    limit (read now: a node started under `ulimit -n 256` gets a small cap)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(1, min(DEFAULT_MAX_CONNECTIONS, (soft - http_cap) // GRPC_SHARE))


@dataclass(frozen=True)
class GrpcLimits:
    """The gRPC port's limits (`kachery-daemon start --help`); see the module docstring."""

    max_connections: int
    handshake_seconds: float
    idle_seconds: float
    message_idle_seconds: float
    write_seconds: float

    @classmethod
    def beside_http(
        cls,
        http_cap: int,
        header_seconds: float,
        keepalive_seconds: float,
        body_idle_seconds: float,
        write_seconds: float,
        max_connections: Optional[int] = None,
    ) -> GrpcLimits:
        """The same rules as HTTP's, with the cap given or one that leaves HTTP room."""
        cap = max_connections if max_connections is not None else default_connection_cap(http_cap)
        return cls(cap, header_seconds, keepalive_seconds, body_idle_seconds, write_seconds)

    def server_options(self) -> List[Tuple[str, Any]]:
        """grpc server options that enforce these limits."""
        return [
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.server_handshake_timeout_ms", _ms(self.handshake_seconds)),
            ("grpc.max_connection_idle_ms", _ms(self.idle_seconds)),
            ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
            ("grpc.keepalive_time_ms", _ms(KEEPALIVE_SECONDS)),
            ("grpc.keepalive_timeout_ms", _ms(KEEPALIVE_TIMEOUT_SECONDS)),
            ("grpc.keepalive_permit_without_calls", 0),  # idle ones are closed instead
            ("grpc.http2.max_pings_without_data", 0),  # keep checking a call that is silent
            ("grpc.http2.min_recv_ping_interval_without_data_ms", _ms(MIN_CLIENT_PING_SECONDS)),
            ("grpc.http2.max_ping_strikes", 2),
        ]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class StreamStalled(InvalidInputError):
    """A call's client sent no message for the message idle timeout (HTTP's 408), or read
    none of its answers for the write timeout."""


async def next_message(
    iterator: AsyncIterator[Any], idle_seconds: float, what: str, then: str = ""
) -> Any:
    """The next message from a client's stream (None at its end); `StreamStalled` naming
    `what` (and saying `then`) if none comes within `idle_seconds`."""
    try:
        return await asyncio.wait_for(iterator.__anext__(), idle_seconds)
    except StopAsyncIteration:
        return None
    except asyncio.TimeoutError:
        raise StreamStalled(f"{what} stalled: no message for {idle_seconds:g} s{then}") from None


async def upload_messages(requests: AsyncIterator[Any], idle_seconds: float) -> AsyncIterator[Any]:
    """The messages of an upload stream, each within `idle_seconds` of the one before."""
    iterator = requests.__aiter__()
    while True:
        message = await next_message(
            iterator, idle_seconds, "the upload", "; nothing was kept, send it again"
        )
        if message is None:
            return
        yield message
