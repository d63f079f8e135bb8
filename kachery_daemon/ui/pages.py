"""The pages that show the node: overview, activity, channels, tokens (and revoking one,
the only change a page can make) and verify."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Dict, List

from aiohttp import web

from kachery_core import __version__
from kachery_core.errors import KacheryError

from .. import activity
from ..node import Node
from ..verify_record import read_verify_record
from .access import page, refuse
from .render import answer
from .storage_use import storage_use

RECENT_PROBLEMS = 10
QUARANTINE_SHOWN = 200


async def _run(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def overview_data(node: Node) -> Dict[str, Any]:
    """What the overview shows (and /metrics counts)."""
    return {
        "nodeId": node.identity.node_id,
        "label": node.label,
        "version": __version__,
        "uptimeSeconds": time.time() - node.started,
        "addresses": list(node.addresses),
        "storageDir": str(node.storage.root),
        "storage": await _run(storage_use, node.storage),
        "storageLimit": node.storage.max_cache_size,
        "counters": dict(node.counters),
        "recentProblems": [
            e.to_json() for e in node.activity.recent(RECENT_PROBLEMS, activity.PROBLEMS)
        ],
    }


@page("overview")
async def overview(request: web.Request) -> web.StreamResponse:
    return answer(request, "overview.html", await overview_data(request.app["node"]))


@page("activity")
async def recent_activity(request: web.Request) -> web.StreamResponse:
    node: Node = request.app["node"]
    events = [e.to_json() for e in node.activity.recent()]
    return answer(request, "activity.html", {"events": events})


@page("channels")
async def channels(request: web.Request) -> web.StreamResponse:
    node: Node = request.app["node"]
    service = node.channels
    shown: List[Dict[str, Any]] = []
    if service is not None:
        for name, bucket in sorted(service.buckets.items()):
            channel = bucket.channel
            checked = service.checked.get(name)
            totals = node.activity.channels.get(name, activity.ChannelTotals())
            roles = [
                r for r, on in (("request", channel.request), ("provide", channel.provide)) if on
            ]
            shown.append(
                {
                    "name": name,
                    "url": bucket.url(channel.prefix),
                    "endpoint": channel.endpoint,
                    "roles": roles,
                    "checkedAt": checked[0] if checked else None,
                    "problems": checked[1] if checked else None,
                    **totals.to_json(),
                }
            )
    data = {
        "configured": service is not None,
        "configFile": str(node.config_file) if node.config_file else None,
        "channels": shown,
        "activeTransfers": service.active_transfers if service is not None else 0,
    }
    return answer(request, "channels.html", data)


def _token_rows(node: Node) -> List[Dict[str, Any]]:
    rows = []
    for record in node.tokens.records():
        rows.append(
            {
                "id": record.token_id,
                "label": record.label,
                "scope": record.scope,
                "created": record.created,
                "lastUsed": node.tokens.last_used.get(record.sha256),
            }
        )
    return rows


@page("tokens")
async def tokens(request: web.Request) -> web.StreamResponse:
    node: Node = request.app["node"]
    try:
        rows = await _run(_token_rows, node)
    except KacheryError as exc:
        return answer(request, "tokens.html", {"tokens": [], "error": str(exc)}, 500)
    return answer(request, "tokens.html", {"tokens": rows})


@page("tokens", changes=True)
async def revoke(request: web.Request) -> web.StreamResponse:
    node: Node = request.app["node"]
    form = await request.post()
    token_id = form.get("id")
    if not isinstance(token_id, str) or not token_id:
        return refuse(request, 400, "say which token to revoke (its id)")
    try:
        record = await _run(node.tokens.revoke, token_id)
    except KacheryError as exc:
        return refuse(request, 400, str(exc))
    node.activity.add("revoked", f"token {record.token_id}", None, record.label)
    if "text/html" in request.headers.get("Accept", "") or "csrf" in form:
        raise web.HTTPSeeOther("/ui/tokens")
    return web.json_response({"success": True, "revoked": record.token_id})


def _quarantine(node: Node) -> List[Dict[str, Any]]:
    found = []
    try:
        entries = sorted(os.scandir(node.storage.quarantine_dir), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries[:QUARANTINE_SHOWN]:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        found.append({"name": entry.name, "size": st.st_size, "movedAt": st.st_mtime})
    return found


@page("verify")
async def verify(request: web.Request) -> web.StreamResponse:
    node: Node = request.app["node"]
    data = {
        "lastRun": await _run(read_verify_record, node.storage.root),
        "quarantine": await _run(_quarantine, node),
    }
    return answer(request, "verify.html", data)
