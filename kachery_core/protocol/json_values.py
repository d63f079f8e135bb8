"""JSON text of mutable keys and values and feed messages, checked the same way by every
network backend before anything is sent.

Python's `json.dumps` writes `NaN` and `Infinity` (which no node accepts) and turns a dict
key such as `1` or `None` into the text `"1"` or `"null"` (a different key from the one
asked for); `requests` refuses NaN with an exception of its own. A backend calls
`json_text` instead, so that every one of them raises the same `InvalidInputError`, naming
what was bad, for the same value:

    >>> json_text({"a": [1, 2.5]}, "mutable key")
    '{"a": [1, 2.5]}'
    >>> json_text({1: "one"}, "mutable key")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kachery_core.errors.InvalidInputError: mutable key {1: 'one'} is not JSON: the dict key 1 ...
"""

from __future__ import annotations

import json
import math
from typing import Any, List, Optional, Set

from kachery_core.errors import InvalidInputError

HINT = "use dicts with string keys, lists, strings, finite numbers, true, false and None"
SHOWN_CHARS = 80
"""How much of a bad value an error shows."""


def json_text(value: Any, what: str) -> str:
    """`value` as JSON text; `InvalidInputError` naming `what` and the value when it has
    no exact JSON form (NaN, infinities, non-string dict keys, bytes, other types, cycles)."""
    problem = _problem(value)
    if problem is None:
        try:
            return json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            problem = str(exc)
    shown = repr(value)
    if len(shown) > SHOWN_CHARS:
        shown = shown[: SHOWN_CHARS - 3] + "..."
    raise InvalidInputError(f"{what} {shown} is not JSON: {problem}", HINT)


def _problem(value: Any) -> Optional[str]:
    """Why `value` (or a part of it) has no exact JSON form, or None. Iterative, so deep
    nesting is `json.dumps`'s to refuse; each container is looked at once (cycles end)."""
    stack: List[Any] = [value]
    seen: Set[int] = set()
    while stack:
        item = stack.pop()
        if item is None or isinstance(item, (bool, int, str)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return "NaN and infinities are not JSON numbers"
            continue
        if not isinstance(item, (dict, list, tuple)):
            return f"{type(item).__name__} is not a JSON type"
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    return f"the dict key {key!r} is not a string (JSON object keys are text)"
            stack.extend(item.values())
        else:
            stack.extend(item)
    return None
