"""The original client's empty upload: `Content-Length: 0` with `Transfer-Encoding: chunked`.

kachery-client 1.2.0 stores a file with `requests.post(url, data=<open file>,
headers={"Content-Length": str(size)})`. For an empty file `requests` adds
`Transfer-Encoding: chunked` but, the Content-Length being set, sends the (empty) file as
is: a head with `Content-Length: 0` and `Transfer-Encoding: chunked`, and no body at all.
aiohttp refuses any request with both headers, with a 400, before a handler runs: its
pure-Python parser in `HttpParser.parse_headers` ("Transfer-Encoding can't be present with
Content-Length"), its C parser through llhttp, which is strict about it. So the original
client's `store_text('')` failed against this node.

Both headers together are how request smuggling works (a proxy and the server disagree on
where the body ends), so the node keeps refusing them, except for exactly what the
original client sends, where no reading finds a body:

* it is the first request of its connection (the original client opens a connection per
  request), and its request line is `POST /store HTTP/1.1`;
* it has one `Content-Length` header, `0`, and one `Transfer-Encoding` header, `chunked`;
* after the head comes nothing for `SETTLE_SECONDS` (what the original sends), or exactly
  the empty chunked body `0\r\n\r\n`.

Such a request is handed to aiohttp as a plain `Content-Length: 0` request with
`Connection: close`, and whatever the peer sends after it is dropped: RFC 9112 section 6.3
says a server that accepts both headers must close the connection after answering, and no
byte after the head is ever read as a request. Every other case (`Content-Length: 5` with
chunked, a chunked body with data, another route, a later request on a kept-alive
connection) reaches aiohttp unchanged and is refused as before.

This is done on the raw bytes, in front of aiohttp's parser (`ConnectionGuard`), because
neither of aiohttp's parsers can be told to accept the pair, and only there can the node
look at what follows the head before the head is parsed.
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

REQUEST_LINE = b"POST /store HTTP/1.1\r\n"
EMPTY_CHUNKED_BODY = b"0\r\n\r\n"
END_OF_HEAD = b"\r\n\r\n"
OPTIONAL_WHITESPACE = b" \t"
"""The only whitespace allowed around a header value (RFC 9110 5.6.3): not vertical tab or
form feed, which `bytes.strip` would also remove."""
SETTLE_SECONDS = 0.1
"""How long to wait after a matching head for body bytes that would make it a real chunked
upload (refused) rather than the original client's empty one."""
MAX_HELD = 64 * 1024
"""Bytes held back while a first request may still be the empty upload; a longer head is
passed on to aiohttp, which applies its own limits."""


class Wait:
    """Not decided yet: hold the bytes until more arrive."""


WAIT = Wait()
Decision = Union[Wait, None, bytes]
"""`WAIT`; None: not the empty upload, pass the bytes on unchanged; bytes: the rewritten
request to pass on instead (and nothing more from this connection)."""


def decide(held: bytes, settled: bool = False) -> Decision:
    """What to do with the first bytes `held` of a connection (see the module docstring);
    `settled`: nothing more came for `SETTLE_SECONDS` after them."""
    if len(held) < len(REQUEST_LINE):
        return WAIT if REQUEST_LINE.startswith(held) else None
    if not held.startswith(REQUEST_LINE):
        return None
    end = held.find(END_OF_HEAD)
    if end < 0:
        return WAIT if len(held) < MAX_HELD else None
    lines = held[len(REQUEST_LINE) : end].split(b"\r\n")
    kept = _without_body_headers(lines)
    if kept is None:
        return None
    body = held[end + len(END_OF_HEAD) :]
    if len(body) < len(EMPTY_CHUNKED_BODY):
        if not EMPTY_CHUNKED_BODY.startswith(body):
            return None
        if not settled:
            return WAIT
    elif not body.startswith(EMPTY_CHUNKED_BODY):
        return None
    head = [REQUEST_LINE.rstrip(b"\r\n"), *kept, b"Content-Length: 0", b"Connection: close"]
    return b"\r\n".join(head) + END_OF_HEAD


def head_is_complete(held: bytes) -> bool:
    return END_OF_HEAD in held


def _without_body_headers(lines: List[bytes]) -> Optional[List[bytes]]:
    """The header lines without Content-Length, Transfer-Encoding and Connection, if the
    head has exactly one `Content-Length: 0` and one `Transfer-Encoding: chunked`."""
    kept: List[bytes] = []
    body_headers: List[Tuple[bytes, bytes]] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or name != name.strip() or b"\n" in line or b"\r" in line:
            return None  # not a plain header line: let aiohttp judge it
        key = name.lower()
        if key in (b"content-length", b"transfer-encoding"):
            body_headers.append((key, value.strip(OPTIONAL_WHITESPACE).lower()))
        elif key != b"connection":
            kept.append(line)
    if sorted(body_headers) != [(b"content-length", b"0"), (b"transfer-encoding", b"chunked")]:
        return None
    return kept
