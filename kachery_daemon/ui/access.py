"""Who is looking at a page, what they may see, and the headers every page carries.

A page is seen with a credential: the session cookie of a login (sessions.py), or the
`KACHERY-CLIENT-AUTH-CODE` header that every other route takes (a token or the client-auth
code), so scripts can read the JSON pages without a login. Scopes are those of the API
(scopes.py): `PAGES` says which each page needs. A form that changes something (revoke,
log out) must send its session's CSRF token, and a POST whose `Origin` is another site is
refused whatever it carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Optional

from aiohttp import web

from kachery_core.errors import KacheryError
from kachery_core.protocol.wire import AUTH_HEADER

from .. import activity, scopes
from ..node import Node
from .render import answer, wants_json
from .sessions import COOKIE, Sessions

PAGES: Dict[str, str] = {
    "overview": scopes.READ,
    "browse": scopes.READ,
    "activity": scopes.READ,
    "channels": scopes.ADMIN,
    "verify": scopes.ADMIN,
    "tokens": scopes.ADMIN,
}
"""Page -> the least scope that sees it; revoking a token needs what the tokens page does."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make a form's Origin "null"
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Viewer:
    scope: str
    label: str
    csrf: Optional[str]
    """The session's CSRF token; None when the credential came in a header."""

    def sees(self, page: str) -> bool:
        return reaches(self.scope, PAGES[page])


def reaches(scope: str, needed: str) -> bool:
    return scopes.RANKS.index(scope) >= scopes.RANKS.index(needed)


def credential_scope(node: Node, value: str) -> Optional[str]:
    """The scope of a token or client-auth code, None when it is neither (or revoked)."""
    try:
        return node.auth.scope_of(value) or node.tokens.scope_of(value)
    except KacheryError:
        return None  # an unreadable token file: every token is refused


def viewer_of(request: web.Request) -> Optional[Viewer]:
    node: Node = request.app["node"]
    header = request.headers.get(AUTH_HEADER)
    if header:
        scope = credential_scope(node, header)
        return None if scope is None else Viewer(scope, "header credential", None)
    sessions: Sessions = request.app["sessions"]
    session_id = request.cookies.get(COOKIE)
    session = sessions.get(session_id)
    if session is None:
        return None
    if session.token_sha256 is not None:
        try:
            still = node.tokens.scope_of_digest(session.token_sha256)
        except KacheryError:
            still = None
        if still is None:  # revoked since the login: the session ends with it
            sessions.close(session_id)
            return None
    return Viewer(session.scope, session.label, session.csrf)


def page(name: str, changes: bool = False) -> Callable[[Handler], Handler]:
    """A page handler that runs only for a viewer whose scope reaches `PAGES[name]`;
    `changes`: a POST that must also carry the session's CSRF token."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            viewer = viewer_of(request)
            if viewer is None:
                if wants_json(request):
                    return refuse(
                        request, 401, "log in first: send a token or the client-auth code"
                    )
                raise web.HTTPSeeOther("/ui/login")
            request["viewer"] = viewer
            if not viewer.sees(name):
                return refuse(
                    request,
                    403,
                    f"this credential has scope {viewer.scope!r}; the {name} page needs "
                    f"{PAGES[name]!r}",
                )
            if changes:
                reason = await csrf_problem(request, viewer)
                if reason is not None:
                    return refuse(request, 403, reason)
            return await handler(request)

        return guarded

    return wrap


async def csrf_problem(request: web.Request, viewer: Optional[Viewer]) -> Optional[str]:
    """Why a POST may not change anything, None when it may."""
    origin = request.headers.get("Origin")
    if origin and origin != f"{request.scheme}://{request.host}":
        return f"a form from another site ({origin[:100]}) may not change this node"
    if viewer is None or viewer.csrf is None:  # a header credential: nothing ambient
        return None
    form = await request.post()
    if not _matches(form.get("csrf"), viewer.csrf):
        return "the form's CSRF token is missing or stale: reload the page and try again"
    return None


def _matches(sent: Any, expected: str) -> bool:
    import hmac

    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected.encode())


def refuse(request: web.Request, status: int, reason: str) -> web.StreamResponse:
    node: Node = request.app["node"]
    node.activity.add(activity.REFUSED, f"web page {request.path}", None, reason)
    response = answer(request, "refused.html", {"error": reason}, status)
    return response


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer under /ui/, errors included, carries `SECURITY_HEADERS`."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response
