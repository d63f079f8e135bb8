"""Request parsing shared by every HTTP route of the node: JSON bodies checked field by field.

A bad request gets a 4xx with a one-line reason, never a 500. Handlers raise
`BadRequest` (400) or `kachery_core.errors.KacheryError` subclasses, which the error
middleware in `http_api.py` maps to status codes (see `http_status` there).
"""

from __future__ import annotations

import asyncio
import time
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from aiohttp import web

from kachery_core.content.uri import ContentUri
from kachery_core.errors import InvalidInputError, KacheryError
from kachery_core.protocol import wire

from .connection_guard import ServerLimits
from .json_bodies import MAX_INT64, MAX_JSON_BODY, parse_json
from .node import report_unexpected

T = TypeVar("T")
Send = Callable[[Union[Mapping[str, Any], bytes]], Awaitable[None]]
"""Sends one framed message of a streamed answer (bytes: written as they are, for the raw
object bytes that follow a batch download's `file` frames)."""


class BadRequest(InvalidInputError):
    """The request is malformed; the message is sent back as the 400 reason."""


class BodyTooLarge(BadRequest):
    """A JSON body over `MAX_JSON_BODY` (413)."""


class BodyTimeout(BadRequest):
    """A body that stalled (no byte for the body idle timeout) or came too slowly (408);
    its connection is closed after the answer (`http_api`), not read on."""


_BODY_CLOCK = "kachery.body_clock"
"""Where a request keeps [when its body was first read, bytes read since]."""


def limits_of(request: web.Request) -> ServerLimits:
    limits = request.app.get("limits")
    return limits if isinstance(limits, ServerLimits) else ServerLimits()


async def read_piece(request: web.Request, size: int = -1, is_json: bool = False) -> bytes:
    """The next bytes of the body (b"" at its end), or `BodyTimeout` if none come in time.

    Two limits (`ServerLimits`), so that neither a silent peer nor one trickling a byte at
    a time holds a connection: no byte for `body_idle_seconds`; and on average at least
    `body_min_rate` bytes per second after a head start (`json_body_seconds` for a JSON
    body, `body_idle_seconds` for an upload), so a body's total deadline grows with it.
    """
    limits = limits_of(request)
    now = time.monotonic()
    clock: Optional[List[float]] = request.get(_BODY_CLOCK)
    if clock is None:
        clock = request[_BODY_CLOCK] = [now, 0.0]
    started, received = clock
    head_start = limits.json_body_seconds if is_json else limits.body_idle_seconds
    left = started + head_start + received / limits.body_min_rate - now
    too_slow = (
        f"the request body is too slow: {received:.0f} bytes in {now - started:.0f} s "
        f"(the node needs {limits.body_min_rate:g} bytes/s after the first {head_start:g} s)"
    )
    if left <= 0:  # only what has arrived already
        if request.content.at_eof():
            return b""
        piece = request.content.read_nowait(size)
        if not piece:
            raise BodyTimeout(too_slow)
    else:
        idle = limits.body_idle_seconds
        reading = request.content.readany() if size < 0 else request.content.read(size)
        try:
            piece = await asyncio.wait_for(reading, min(idle, left))
        except asyncio.TimeoutError:
            if left < idle:
                raise BodyTimeout(too_slow) from None
            raise BodyTimeout(f"the request body stalled: no bytes for {idle:g} s") from None
    clock[1] += len(piece)
    return piece


async def read_json_object(request: web.Request) -> Dict[str, Any]:
    """The whole request body as a JSON object, or `BadRequest` saying what is wrong with it.

    The body is read to its end (the stream hands out only what has arrived so far), up to
    `MAX_JSON_BODY` bytes; beyond that, announced or not, the answer is 413.
    """
    too_large = (
        f"JSON body is larger than {MAX_JSON_BODY} bytes (16 MiB), the node's limit; "
        "store large data as a file and send its URI instead"
    )
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise BodyTooLarge(too_large)
    raw = bytearray()
    while True:
        piece = await read_piece(request, is_json=True)
        if not piece:
            break
        raw += piece
        if len(raw) > MAX_JSON_BODY:
            raise BodyTooLarge(too_large)
    doc = parse_json(raw) if raw else None
    if not isinstance(doc, dict):
        raise BadRequest("body must be a JSON object")
    return doc


def field(
    doc: Dict[str, Any], key: str, kind: Union[Type[T], Tuple[type, ...]], default: Any = ...
) -> Any:
    """`doc[key]`, checked to be of `kind`; missing -> `default` if given, else BadRequest.

    bool is not accepted where int is asked for (JSON `true` is not a byte count).
    """
    if key not in doc or doc[key] is None:
        if default is not ...:
            return default
        raise BadRequest(f"missing field {key!r}")
    value = doc[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise BadRequest(f"field {key!r} must be {_names(kinds)}, not {value!r}")
    if not isinstance(value, kinds):
        raise BadRequest(f"field {key!r} must be {_names(kinds)}, not {type(value).__name__}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT64:
        raise BadRequest(f"field {key!r} must be from -(2^63-1) to 2^63-1")
    return value


def file_key_field(doc: Dict[str, Any], key: str = "fileKey") -> ContentUri:
    """The object the JSON FileKey `doc[key]` names, every field checked (`wire.parse_file_key`)."""
    return wire.parse_file_key(doc.get(key), key)


async def answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send `response`, then close the connection: the rest of a body that came too slowly
    is not waited for (aiohttp would otherwise linger, reading it, for another 10 s)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    protocol = request.protocol
    if protocol is not None:
        protocol.force_close()
    return response


def error_response(status: int, text: str, error_type: str) -> web.Response:
    """A 4xx/5xx answer: one line of text, and the error type in its header for clients."""
    return web.Response(
        status=status,
        text=wire.one_line(text) + "\n",
        headers={wire.ERROR_TYPE_HEADER: error_type},
    )


async def framed_answer(
    request: web.Request, answer: Callable[[Send], Awaitable[None]]
) -> web.StreamResponse:
    """A 200 whose body is framed messages (`wire.encode_frame`) sent by `answer(send)`.

    Once the answer has started its status cannot change, so a failure is sent as an error
    frame (`wire.error_frame`, with its `errorType`); a bug is logged and sent as one line.
    """
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)

    async def send(message: Union[Mapping[str, Any], bytes]) -> None:
        await response.write(message if isinstance(message, bytes) else wire.encode_frame(message))

    try:
        await answer(send)
    except KacheryError as exc:
        await send(wire.error_frame(exc))
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:
        line = report_unexpected(exc, f"{request.method} {request.path}")
        await send(wire.error_frame(KacheryError(line)))  # errorType "error"
    await response.write_eof()
    return response


def _names(kinds: Tuple[type, ...]) -> str:
    words = {
        str: "a string",
        int: "an integer",
        float: "a number",
        dict: "an object",
        list: "a list",
        bool: "true or false",
    }
    return " or ".join(words.get(k, k.__name__) for k in kinds)
