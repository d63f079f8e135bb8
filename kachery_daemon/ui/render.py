"""One answer, two forms: HTML from a template, or the same data as JSON when the client
asks with `Accept: application/json` (scripts, monitoring)."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

from aiohttp import web

from kachery_core.progress import human_size

from ..tokens import printable


def wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def answer(
    request: web.Request, template: str, data: Dict[str, Any], status: int = 200
) -> web.StreamResponse:
    if wants_json(request):
        return web.json_response(dict(data, success=status < 400), status=status)
    import aiohttp_jinja2

    context = dict(data, viewer=request.get("viewer"), path=request.path)
    return aiohttp_jinja2.render_template(template, request, context, status=status)


def visible(text: Any) -> str:
    """Text from the store (a file name) as a reader should see it: every character that
    is not printable (controls, bidi overrides, zero-width marks) written as its escape,
    so `\\u202e` shows instead of reversing the line. The template then HTML-escapes it."""
    return printable(str(text))


def size(count: Optional[int]) -> str:
    return "-" if count is None else human_size(count)


def when(stamp: Optional[float]) -> str:
    if stamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s"


FILTERS = {"visible": visible, "size": size, "when": when, "duration": duration}
