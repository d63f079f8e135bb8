"""The probe: `GET /probe` on a node, answering who it is and where its storage lives.

Backend selection probes the configured local node to decide whether to use it, and
the node-backed backends probe before their first request. This uses only the standard
library so that it stays cheap on every command. Answers are cached for the process.
"""

from __future__ import annotations

import os
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


@dataclass(frozen=True)
class ProbeResult:
    """A probe's answer, or why there was none.

    `tls_error` says why the HTTPS handshake failed (an untrusted certificate, or a
    node that speaks plain HTTP): unlike "nothing listens", that is worth telling a user
    who asked for TLS, instead of quietly using the embedded storage.
    """

    answer: Optional[ProbeAnswer]
    listening: bool = False
    tls_error: Optional[str] = None


_cache: Dict[Tuple[str, int, bool], ProbeResult] = {}


@dataclass(frozen=True)
class Tls:
    """Probe over HTTPS, trusting `ca_file` (None: the system's CAs).

    `verify=False` only asks "is a node listening there?" (`kachery-daemon info` on the
    node's own machine); clients always verify.
    """

    ca_file: Optional[str] = None
    verify: bool = True

    @classmethod
    def from_settings(
        cls, daemon_tls: bool, tls_ca_file: Optional[os.PathLike[str]]
    ) -> Optional[Tls]:
        """What a client uses for the `daemon_tls` and `tls_ca_file` settings: None for
        plain HTTP. Backend selection and the http backend probe alike through this."""
        if not daemon_tls:
            return None
        return cls(None if tls_ca_file is None else os.fspath(tls_ca_file))


def probe_node(
    host: str,
    port: int,
    timeout: float = PROBE_TIMEOUT,
    fresh: bool = False,
    tls: Optional[Tls] = None,
) -> Optional[ProbeAnswer]:
    """Probe `host:port`; None if nothing there answers like a kachery node."""
    return probe(host, port, timeout, fresh, tls).answer


def probe(
    host: str,
    port: int,
    timeout: float = PROBE_TIMEOUT,
    fresh: bool = False,
    tls: Optional[Tls] = None,
) -> ProbeResult:
    """Probe `host:port`, telling "nothing listens" from "the TLS handshake failed"."""
    key = (host, port, tls is not None)
    if not fresh and key in _cache:
        return _cache[key]
    result = _probe_once(host, port, timeout, tls)
    _cache[key] = result
    return result


def forget_probe(host: str, port: int) -> None:
    for tls in (False, True):
        _cache.pop((host, port, tls), None)


def _probe_once(host: str, port: int, timeout: float, tls: Optional[Tls]) -> ProbeResult:
    # Connect first with a bare socket: when nothing listens (the usual case without a
    # node) the answer comes without importing the HTTP machinery at all.
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return ProbeResult(None)
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
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            return ProbeResult(None, True, _tls_failure(exc))
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", "/probe")
        response = conn.getresponse()
        if response.status != 200:
            return ProbeResult(None, True)
        doc = json.loads(response.read(1 << 20))
    except (OSError, socket.timeout, http.client.HTTPException, ValueError):
        return ProbeResult(None, True)
    finally:
        conn.close()
    if not isinstance(doc, dict) or doc.get("success") is not True:
        return ProbeResult(None, True)
    answer = ProbeAnswer(
        str(doc.get("nodeId", "")),
        str(doc.get("daemonVersion", "")),
        str(doc.get("kacheryStorageDir", "")),
        doc,
    )
    return ProbeResult(answer, True)


def _tls_failure(exc: BaseException) -> str:
    """One line on why a handshake failed (the certificate's problem when it is one)."""
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    if reason:
        text = str(reason).replace("_", " ").lower()
        if getattr(exc, "verify_message", None):
            return f"its certificate was not accepted ({text})"
        if "wrong version" in text or "record layer" in text or "http request" in text:
            return f"it does not speak TLS ({text}); a node serving plain HTTP?"
        return f"the TLS handshake failed ({text})"
    return f"the TLS handshake failed ({exc})"
