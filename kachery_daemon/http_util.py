"""Request parsing shared by every route of the node: JSON bodies checked field by field.

A bad request gets a 4xx with a one-line reason, never a 500. Handlers raise
`BadRequest` (400) or `kachery_core.errors.KacheryError` subclasses, which the error
middleware in `server.py` maps to status codes: `NotFoundError` 404, `InvalidInputError`,
`InvalidUriError`, `IntegrityError` 400, other `KacheryError` 400.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple, Type, TypeVar, Union

from aiohttp import web

from kachery_core.uri import is_sha1

MAX_JSON_BODY = 16 << 20
T = TypeVar("T")


class BadRequest(Exception):
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


def sha1_field(doc: Dict[str, Any], key: str, required: bool = True) -> Optional[str]:
    value = field(doc, key, str, ... if required else None)
    if value is None:
        return None
    if not is_sha1(value):
        raise BadRequest(f"field {key!r} is not a SHA-1 hash: {value!r}")
    return str(value).lower()


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
