"""Which backend a command uses, and why.

1. An explicit choice: the `--backend` flag, then `KACHERY_BACKEND`, then `backend` in
   the config file (`--transport`, `KACHERY_TRANSPORT` and `transport` are older spellings). An unknown name is an error naming where it was set.
2. A plugin's `kachery_select_backend` hook (an answer naming no installed backend is
   ignored with a warning naming the plugin).
3. `offline` when `KACHERY_OFFLINE_STORAGE_DIR` is set.
4. `remote` when the daemon host is another machine.
5. `remote` when a node answers the probe on this machine but its storage directory
   (`KACHERY_STORAGE_DIR` when set, else the one the probe reports) is not readable by
   this user: a lab member beside a node they do not own. Files then travel over the
   connection into the user's own cache, as from another machine (with a token).
6. `http` when a node answers the probe on the configured host and port (over HTTPS,
   trusting `tls_ca_file`, when `daemon_tls` is set). With `daemon_tls` set, a
   listener there that fails the TLS handshake (an untrusted certificate, a plain-HTTP
   node) is an error naming the TLS problem: the user asked for TLS, so quietly using
   the embedded storage instead would put files where they did not mean.
7. `local`, the embedded storage, otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from kachery_client.backends.registry import BackendRegistry
from kachery_core.errors import TransportError
from kachery_core.protocol.address import url_host
from kachery_core.protocol.probe import UNREADABLE, ProbeAnswer, Tls, probe, storage_reach
from kachery_core.records import dataclass
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
    hostname = os.uname().nodename.lower()  # gethostname(), without importing `socket`
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
            unreadable = _unreadable_storage(config, result.answer, registry)
            if unreadable:
                return Selection("remote", f"a node answered at {host}:{port}, but {unreadable}")
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


def _unreadable_storage(config: Config, answer: ProbeAnswer, registry: BackendRegistry) -> str:
    """Why this user cannot read the answering node's storage in place ("" when they can,
    or when the directory is wrong in another way: the http backend then says how)."""
    if "remote" not in registry.backends:
        return ""
    explicit = config.is_set("storage_dir")
    root = config.storage_dir if explicit else Path(answer.storage_dir)
    reach = storage_reach(root, answer.node_id)
    if reach.problem != UNREADABLE:
        return ""
    return (
        f"its storage directory {root} {reach.describe()}, so files travel over the "
        "connection into this user's own cache (the remote backend, signed in with an access token)"
    )
