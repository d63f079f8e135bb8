"""The node's web pages under `/ui/`, served on its HTTP(S) port beside the API.

    /ui/             overview: identity, uptime, addresses, storage use, recent problems
    /ui/browse       a sha1:// or sha1dir:// URI: a tree's entries, a file's page
    /ui/activity     recent stores, loads, channel transfers and refusals
    /ui/channels     the node's channels, their start-up check and traffic
    /ui/tokens       access tokens (never their secrets); POST /ui/tokens/revoke
    /ui/verify       the last `kachery-daemon verify` run and the quarantine
    /ui/login        log in with a token or the client-auth code; POST /ui/logout
    /metrics         Prometheus text (the API's admin scope, in the usual header)

Each page answers JSON for `Accept: application/json`. Who may see what is in access.py;
templates (Jinja2, autoescaping) and the one small script and style sheet are files of
this package, served by the node itself. Jinja2 is imported here only, when the node
builds its app: the command line never pays for it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..node import Node
from . import access, browse, login, pages
from .metrics import metrics
from .render import FILTERS
from .sessions import Sessions

HERE = Path(__file__).parent


def add_ui(app: web.Application, node: Node) -> None:
    """Mount the pages under /ui/ and /metrics on the node's app."""
    import aiohttp_jinja2
    import jinja2

    ui = web.Application(middlewares=[access.security_headers])
    ui["node"] = node
    ui["sessions"] = Sessions()
    environment = aiohttp_jinja2.setup(
        ui,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
    )
    environment.filters.update(FILTERS)
    routes = ui.router
    routes.add_get("/", pages.overview)
    routes.add_get("/browse", browse.browse)
    routes.add_get("/download", browse.download)
    routes.add_get("/image", browse.image)
    routes.add_get("/activity", pages.recent_activity)
    routes.add_get("/channels", pages.channels)
    routes.add_get("/tokens", pages.tokens)
    routes.add_post("/tokens/revoke", pages.revoke)
    routes.add_get("/verify", pages.verify)
    routes.add_get("/login", login.login_form)
    routes.add_post("/login", login.login)
    routes.add_post("/logout", login.logout)
    routes.add_static("/static/", HERE / "static", show_index=False, follow_symlinks=False)
    app.router.add_get("/ui", _to_pages)  # before the pages: their prefix would take it
    app.add_subapp("/ui/", ui)
    app.router.add_get("/metrics", metrics)


async def _to_pages(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/ui/")
