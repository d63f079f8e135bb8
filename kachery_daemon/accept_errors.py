"""Accept failures for lack of descriptors, logged once per burst instead of once per accept.

When the process runs out of file descriptors (EMFILE), asyncio's accept loop reports every
failed `accept()` to the loop's exception handler, a full traceback each, and retries many
times a second: a node under `ulimit -n 256` wrote tens of MB of tracebacks in seconds, which
fills the disk and buries everything else in the log. `AcceptErrorLog` is the loop's
exception handler: the first failure of a burst is one line on stderr, the rest of the
burst is counted, and when no failure has come for `quiet_seconds` one more line says how
many there were. Every other report goes to asyncio's default handler, as before.

(gRPC's own listener, in grpc's C core, logs one line per second while it cannot accept; the
gRPC cap in grpc_limits keeps it from ever running the process out of descriptors.)
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, Callable, Dict, Optional, TextIO

ACCEPT_FAILED = "socket.accept() out of system resource"
"""The message asyncio reports a failed accept with (EMFILE, ENFILE, ENOBUFS, ENOMEM)."""
QUIET_SECONDS = 5.0


class AcceptErrorLog:
    """A loop exception handler (`loop.set_exception_handler`); see the module docstring."""

    def __init__(
        self,
        quiet_seconds: float = QUIET_SECONDS,
        out: Optional[TextIO] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet_seconds = quiet_seconds
        self.out = out
        self.clock = clock
        self.failures = 0
        """Failed accepts in the current burst (0: none going on)."""
        self.started = 0.0
        self.last = 0.0
        self.timer: Optional[asyncio.TimerHandle] = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: Dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_FAILED:
            loop.default_exception_handler(context)
            return
        now = self.clock()
        self.last = now
        self.failures += 1
        if self.failures > 1:
            return
        self.started = now
        exc = context.get("exception")
        reason = getattr(exc, "strerror", None) or str(exc or "out of resources")
        where = _address(context.get("socket"))
        self._say(
            f"kachery-daemon: cannot accept connections{where}: {reason} (further failures are "
            f"counted, not logged, until none has come for {self.quiet_seconds:g} s)"
        )
        self.timer = loop.call_later(self.quiet_seconds, self._check, loop)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        """End the burst once no failure came for `quiet_seconds`, else look again later."""
        now = self.clock()
        wait = self.last + self.quiet_seconds - now
        if wait > 0:
            self.timer = loop.call_later(wait, self._check, loop)
            return
        self.timer = None
        count, self.failures = self.failures, 0
        self._say(
            f"kachery-daemon: accept failures stopped ({count} failed accept"
            f"{'' if count == 1 else 's'} in {self.last - self.started:.1f} s)"
        )

    def _say(self, line: str) -> None:
        out = self.out or sys.stderr
        print(line, file=out, flush=True)


def _address(sock: Any) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except (AttributeError, OSError, TypeError, ValueError):
        return ""
    return f" on {host}:{port}"
