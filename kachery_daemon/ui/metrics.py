"""`GET /metrics`: the overview's figures and the node's counters as Prometheus text.

It needs what `/stats` needs (an admin token or the client-auth code, in the usual header;
see scopes.py), so a scraper is configured like any other client.
"""

from __future__ import annotations

import re

from aiohttp import web

from ..node import Node
from .pages import overview_data

PREFIX = "kachery_node_"


def _metric_name(name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    return PREFIX + re.sub(r"[^a-z0-9_]", "_", snake)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def metrics(request: web.Request) -> web.Response:
    node: Node = request.app["node"]
    data = await overview_data(node)
    lines = [
        f"# TYPE {PREFIX}info gauge",
        f'{PREFIX}info{{node_id="{_label(data["nodeId"])}",version="{_label(data["version"])}",'
        f'label="{_label(data["label"])}"}} 1',
        f"# TYPE {PREFIX}uptime_seconds gauge",
        f"{PREFIX}uptime_seconds {data['uptimeSeconds']:.0f}",
    ]
    for name, value in sorted(data["storage"].items()):
        metric = _metric_name("storage_" + name)
        lines += [f"# TYPE {metric} gauge", f"{metric} {value}"]
    for name, value in sorted(node.stats().items()):
        if name == "uptimeSeconds":
            continue
        metric = _metric_name(name)
        kind = "gauge" if name == "watchedSubfeeds" else "counter"
        lines += [f"# TYPE {metric} {kind}", f"{metric} {value}"]
    return web.Response(
        text="\n".join(lines) + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )
