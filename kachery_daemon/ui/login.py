"""Logging in and out of the web pages (see sessions.py for what a session is)."""

from __future__ import annotations

import hashlib

from aiohttp import web

from .. import scopes
from ..node import Node
from ..tokens import TOKEN_PREFIX
from .access import credential_scope, csrf_problem, refuse, viewer_of
from .render import answer
from .sessions import COOKIE, Sessions


async def login_form(request: web.Request) -> web.StreamResponse:
    return answer(request, "login.html", {})


async def login(request: web.Request) -> web.StreamResponse:
    reason = await csrf_problem(request, None)  # another site's form: refused
    if reason is not None:
        return refuse(request, 403, reason)
    node: Node = request.app["node"]
    form = await request.post()
    credential = form.get("credential")
    credential = credential.strip() if isinstance(credential, str) else ""
    scope = credential_scope(node, credential) if credential else None
    if scope is None:
        return refuse(
            request,
            403,
            "unknown or revoked token (or a stale client-auth code): check it and try again",
        )
    digest, label = None, "local user (client-auth code)"
    if scope != scopes.LOCAL and credential.startswith(TOKEN_PREFIX):
        digest = hashlib.sha256(credential.encode()).hexdigest()
        label = next((r.label for r in node.tokens.records() if r.sha256 == digest), "access token")
    sessions: Sessions = request.app["sessions"]
    session_id = sessions.open(scope, digest, label)
    response = web.HTTPSeeOther("/ui/")
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(sessions.seconds),
        path="/ui/",
        httponly=True,
        secure=request.secure,
        samesite="Strict",
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    viewer = viewer_of(request)
    reason = await csrf_problem(request, viewer)
    if reason is not None:
        return refuse(request, 403, reason)
    sessions: Sessions = request.app["sessions"]
    sessions.close(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/ui/login")
    response.del_cookie(COOKIE, path="/ui/")
    raise response
