"""The probe: `GET /probe` on a node, answering who it is and where its storage lives.

Backend selection probes the configured local node to decide whether to use it, and
the node-backed backends probe before their first request. This uses only the standard
library so that it stays cheap on every command. Answers are cached for the process.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class ProbeAnswer:
    node_id: str
    daemon_version: str
    storage_dir: str
    raw: Dict[str, object]


_cache: Dict[Tuple[str, int, bool], Optional[ProbeAnswer]] = {}


@dataclass(frozen=True)
class Tls:
    """Probe over HTTPS, trusting `ca_file` (None: the system's CAs).

    `verify=False` only asks "is a node listening there?" (`kachery-daemon info` on the
    node's own machine); clients always verify.
    """

    ca_file: Optional[str] = None
    verify: bool = True


def probe_node(
    host: str,
    port: int,
    timeout: float = PROBE_TIMEOUT,
    fresh: bool = False,
    tls: Optional[Tls] = None,
) -> Optional[ProbeAnswer]:
    """Probe `host:port`; None if nothing there answers like a kachery node."""
    key = (host, port, tls is not None)
    if not fresh and key in _cache:
        return _cache[key]
    answer = _probe_once(host, port, timeout, tls)
    _cache[key] = answer
    return answer


def forget_probe(host: str, port: int) -> None:
    for tls in (False, True):
        _cache.pop((host, port, tls), None)


def _probe_once(host: str, port: int, timeout: float, tls: Optional[Tls]) -> Optional[ProbeAnswer]:
    # Connect first with a bare socket: when nothing listens (the usual case without a
    # node) the answer comes without importing the HTTP machinery at all.
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    import http.client
    import json

    if tls is not None:
        import ssl

        context = ssl.create_default_context(cafile=tls.ca_file)
        if not tls.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            sock = context.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError):
            sock.close()
            return None
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", "/probe")
        response = conn.getresponse()
        if response.status != 200:
            return None
        doc = json.loads(response.read(1 << 20))
    except (OSError, socket.timeout, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()
    if not isinstance(doc, dict) or doc.get("success") is not True:
        return None
    return ProbeAnswer(
        str(doc.get("nodeId", "")),
        str(doc.get("daemonVersion", "")),
        str(doc.get("kacheryStorageDir", "")),
        doc,
    )
