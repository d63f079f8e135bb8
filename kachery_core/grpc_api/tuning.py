"""Settings that make megabyte gRPC messages cheap: channel options for both sides (and
the client's receive window), and `keep_freed_buffers`, which the node calls before it serves.

Every DataChunk of a load is a MiB, and grpc allocates fresh buffers for each message. With glibc's defaults such a buffer is handed back to the kernel when freed,
so the next one page-faults on every page. Measured on a 2-core machine for a 1 GiB load:
the node spent ~1.9 CPU-seconds sending it, ~1.0 with freed buffers of up to 8 MiB kept in
the heap (at most 16 MiB of it unused), and with at most 2 malloc arenas its peak RSS went
down, not up. This is process-wide, so only the node's own process does it: a client is
someone else's program (a notebook, a pipeline), whose allocator a library must not
retune; the client's system time on large loads is higher for it (a 1 GiB load over
loopback page-faults ~60-130 thousand times, ~8 thousand with the same settings: a
program of our own, like the CLI, could make them before it loads).
Never done where the C library has no `mallopt`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, List, Tuple

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BUFFERS_UP_TO = 8 << 20
KEEP_FREE_AT_MOST = 16 << 20
ARENAS = 2

MAX_MESSAGE = 8 << 20
"""Largest message either side accepts (a DataChunk carries at most 4 MiB of data)."""

CHANNEL_OPTIONS: List[Tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.http2.max_frame_size", (1 << 24) - 1),  # the largest HTTP/2 allows
]
"""Options for the client's channel and the node's server alike."""

RECEIVE_WINDOW = 1 << 20
"""Bytes a client lets the node send ahead of the message being read (per stream)."""

CLIENT_CHANNEL_OPTIONS: List[Tuple[str, Any]] = [
    *CHANNEL_OPTIONS,
    # grpc grows a stream's receive window from its bandwidth-delay estimate; on loopback
    # and a LAN that lets it buffer tens of MiB of a load ahead of the hashing thread
    # (a client's RSS went from ~57 to 80-108 MiB for 1 GiB). A fixed window of the
    # message being read plus RECEIVE_WINDOW keeps memory flat; a link with a long round
    # trip gets less throughput for it (about 2 MiB per round trip).
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", RECEIVE_WINDOW),
]
"""Options for the client's channel (a load's receiving end)."""

_done = False


def keep_freed_buffers() -> None:
    """Ask glibc to reuse freed message buffers instead of unmapping them (once; no-op
    where the C library has no `mallopt`)."""
    global _done
    if _done:
        return
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, KEEP_BUFFERS_UP_TO)
    mallopt(M_TRIM_THRESHOLD, KEEP_FREE_AT_MOST)
    mallopt(M_ARENA_MAX, ARENAS)
