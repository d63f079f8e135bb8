"""Request parsing shared by every HTTP route of the node: JSON bodies checked field by field.

A bad request gets a 4xx with a one-line reason, never a 500. Handlers raise
`BadRequest` (400) or `kachery_core.errors.KacheryError` subclasses, which the error
middleware in `http_api.py` maps to status codes (see `http_status` there).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Dict, Mapping, Tuple, Type, TypeVar, Union

from aiohttp import web

from kachery_core import wire
from kachery_core.errors import InvalidInputError, KacheryError
from kachery_core.uri import ContentUri

from .node import report_unexpected

MAX_JSON_BODY = 16 << 20
T = TypeVar("T")
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
"""Sends one framed message of a streamed answer."""


class BadRequest(InvalidInputError):
    """The request is malformed; the message is sent back as the 400 reason."""


async def read_json_object(request: web.Request) -> Dict[str, Any]:
    """The request body as a JSON object, or `BadRequest` saying what is wrong with it."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise BadRequest(f"JSON body of {request.content_length} bytes is too large")
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise BadRequest("JSON body is too large")
    try:
        doc = json.loads(raw.decode("utf-8")) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
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

    async def send(message: Mapping[str, Any]) -> None:
        await response.write(wire.encode_frame(message))

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
