"""Request parsing shared by every HTTP route of the node: JSON bodies checked field by field.

A bad request gets a 4xx with a one-line reason, never a 500. Handlers raise
`BadRequest` (400) or `kachery_core.errors.KacheryError` subclasses, which the error
middleware in `http_api.py` maps to status codes (see `http_status` there).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Dict, Mapping, Tuple, Type, TypeVar, Union

from aiohttp import web

from kachery_core.content.uri import ContentUri
from kachery_core.errors import InvalidInputError, KacheryError
from kachery_core.protocol import wire

from .connection_guard import DEFAULT_BODY_IDLE_SECONDS
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
    """An upload that stalled: no byte for the body idle timeout (408)."""


async def read_piece(request: web.Request, size: int = -1) -> bytes:
    """The next bytes of the body (b"" at its end), or `BodyTimeout` if none come in time.

    `request.app["body_idle_seconds"]` (see `ServerLimits`) is how long a client may stall.
    """
    idle = request.app.get("body_idle_seconds", DEFAULT_BODY_IDLE_SECONDS)
    reading = request.content.readany() if size < 0 else request.content.read(size)
    try:
        return await asyncio.wait_for(reading, idle)
    except asyncio.TimeoutError:
        raise BodyTimeout(f"the request body stalled: no bytes for {idle:g} s") from None


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
        piece = await read_piece(request)
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
