"""JSON from clients, parsed strictly: the same rules for HTTP bodies and gRPC `*_json` fields.

Refused with `InvalidInputError` (400 / INVALID_ARGUMENT), never a 500:

* text that is not UTF-8, or not JSON;
* `NaN`, `Infinity`, `-Infinity` and numbers too large for a float (`1e999`): standard
  JSON has no such numbers, and the node would echo them back as non-standard JSON;
* documents nested deeper than Python's parser can follow (its recursion limit, about
  1000 levels).

Integers of any size parse; fields used as offsets, sizes, positions or counts are checked
to fit 64 bits where they are read (`http_util.field`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Union

from kachery_core.errors import InvalidInputError

MAX_JSON_BODY = 16 << 20
"""Largest JSON request body (16 MiB); a larger one is answered 413."""
MAX_INT64 = (1 << 63) - 1


def parse_json(raw: Union[bytes, bytearray, str], what: str = "body") -> Any:
    """The JSON document in `raw`, or `InvalidInputError` saying what is wrong with it."""
    try:
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: not UTF-8 ({exc.reason})") from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidInputError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large for a number")
    return value
