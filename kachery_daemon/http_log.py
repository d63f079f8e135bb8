"""What the node logs about malformed HTTP requests: one line each, rate limited.

aiohttp logs a request its parser refuses (a bad header, a request line too long, both
Content-Length and Transfer-Encoding) with a full traceback, and anyone can send one, no
credential needed: 20 bad requests made 20 tracebacks, and a flood of them a log that
grows without bound. The refusal is not the node's fault, so it is logged as one line
naming the peer and the reason, at most `BURST` lines per `WINDOW` seconds; the next line
after a quiet spell says how many were left out. Anything else aiohttp logs (a bug in a
handler) keeps its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from kachery_core.protocol import wire

BURST = 10
WINDOW = 10.0
MAX_REASON = 200
LOGGER_NAME = "kachery_daemon.http"


class MalformedRequests(logging.Filter):
    """Turns aiohttp's traceback for a refused request into one line, `burst` per `window`."""

    def __init__(self, burst: int = BURST, window: float = WINDOW) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.started = float("-inf")
        self.logged = 0
        self.left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now - self.started >= self.window:
            self.started, self.logged = now, 0
        if self.logged >= self.burst:
            self.left_out += 1
            return False
        self.logged += 1
        peer = getattr(record, "peer", "?")  # see name_peer; newer aiohttp passes it
        if isinstance(record.args, tuple) and record.args:
            peer = record.args[0]
        reason = wire.one_line(str(exc.message or exc)).rstrip(" ^")  # no caret line
        reason = _printable(reason[:MAX_REASON])
        line = f"kachery-daemon: refused a malformed HTTP request from {peer}: {reason}"
        if self.left_out:
            line += f" ({self.left_out} more refused before this one, not logged)"
            self.left_out = 0
        record.msg, record.args = line, None
        record.exc_info, record.exc_text = None, None
        return True


def _printable(text: str) -> str:
    """The peer chose these characters: escape any that could move a terminal's cursor."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def name_peer(handler: Any, transport: asyncio.BaseTransport) -> None:
    """Give aiohttp's handler of one connection a logger that knows its peer: aiohttp 3.10
    (the last for Python 3.8) logs a refused request without it, newer ones with it."""
    logger = getattr(handler, "logger", None)
    if isinstance(logger, logging.Logger):
        peername = transport.get_extra_info("peername")
        peer = peername[0] if isinstance(peername, tuple) and peername else "?"
        handler.logger = logging.LoggerAdapter(logger, {"peer": peer})


def server_logger() -> logging.Logger:
    """The logger for aiohttp's request handlers (`web.AppRunner(logger=...)`)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, MalformedRequests) for f in logger.filters):
        logger.addFilter(MalformedRequests())
    return logger
