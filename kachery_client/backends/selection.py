"""Which backend a command uses, and why.

1. An explicit choice: the `--backend` flag, then `KACHERY_BACKEND`, then `backend` in
   the config file (`--transport`, `KACHERY_TRANSPORT` and `transport` are older spellings). An unknown name is an error naming where it was set.
2. A plugin's `kachery_select_backend` hook (an answer naming no installed backend is
   ignored with a warning naming the plugin).
3. `offline` when `KACHERY_OFFLINE_STORAGE_DIR` is set.
4. `remote` when the daemon host is another machine.
5. `http` when a node answers the probe on the configured host and port (over HTTPS,
   trusting `tls_ca_file`, when `daemon_tls` is set). With `daemon_tls` set, a
   listener there that fails the TLS handshake (an untrusted certificate, a plain-HTTP
   node) is an error naming the TLS problem: the user asked for TLS, so quietly using
   the embedded storage instead would put files where they did not mean.
6. `local`, the embedded storage, otherwise.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from kachery_client.backends.registry import BackendRegistry
from kachery_core.errors import TransportError
from kachery_core.protocol.address import url_host
from kachery_core.protocol.probe import Tls, probe
from kachery_core.settings.config import Config


@dataclass(frozen=True)
class Selection:
    name: str
    reason: str


def is_local_host(host: str) -> bool:
    """True when `host` names this machine (no DNS lookup: this runs on every command)."""
    host = host.lower().strip("[]")
    if host in ("localhost", "localhost.localdomain", "::1", "0.0.0.0", "::") or host.startswith(
        "127."
    ):
        return True
    hostname = socket.gethostname().lower()
    return host in (hostname, hostname.split(".")[0])


def select_backend(config: Config, registry: BackendRegistry) -> Selection:
    if config.backend:
        source = config.source("backend")
        registry.get(config.backend, source=source)  # unknown or broken: say so, and where
        return Selection(config.backend, f"chosen by {source}")
    name, plugin = registry.select_from_plugins(config)
    if name:
        return Selection(name, f"chosen by plugin {plugin!r} (kachery_select_backend hook)")
    if config.offline_storage_dir:
        return Selection(
            "offline",
            f"KACHERY_OFFLINE_STORAGE_DIR is set ({config.source('offline_storage_dir')})",
        )
    host, port = config.daemon_host, config.daemon_port
    if not is_local_host(host):
        return Selection("remote", f"daemon host {host!r} is another machine")
    if "http" in registry.backends:
        tls = Tls.from_settings(config.daemon_tls, config.tls_ca_file)  # as the http backend
        result = probe(host, port, tls=tls)
        if result.answer is not None:
            if tls is None:
                return Selection("http", f"a node answered the probe at {host}:{port}")
            where = f"https://{url_host(host)}:{port}"
            return Selection("http", f"a node answered the probe over HTTPS at {where}")
        if tls is not None and result.tls_error is not None:
            raise TransportError(
                f"daemon_tls is set ({config.source('daemon_tls')}), but the node at "
                f"https://{url_host(host)}:{port} failed the TLS check: {result.tls_error}",
                "trust its certificate with KACHERY_TLS_CA_FILE (tls_ca_file), "
                "or unset KACHERY_DAEMON_TLS for a plain-HTTP node",
            )
    return Selection("local", f"no node answered at {host}:{port}, so the embedded storage is used")
