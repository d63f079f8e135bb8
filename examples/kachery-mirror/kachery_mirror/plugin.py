"""The `kachery.plugins` entry point: registers the `mirror` backend and may select it.

kachery imports this module whenever it rebuilds its backend registry, and calls the
selection hook on every command that does not name a backend. So it imports nothing
heavy: the transport, and `requests` with it, are imported only when `mirror` is used.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, List, Optional

from kachery_core.backend.hookspecs import BackendSpec, hookimpl

from .settings import PLUGIN_NAME, MirrorSettings

if TYPE_CHECKING:
    from kachery_core.settings.config import Config


@hookimpl
def kachery_register_backends() -> List[BackendSpec]:
    return [
        BackendSpec(
            name=PLUGIN_NAME,
            target="kachery_mirror.transport:MirrorTransport",
            summary="read-only: loads objects from a storage directory published by a web server",
            requires=("requests",),
        )
    ]


@hookimpl
def kachery_select_backend(config: Config) -> Optional[str]:
    """Choose the mirror on hosts listed in `select_on_hosts`, once a URL is configured.

    No network here: this runs on every command, and only reads settings. A bad
    `[plugins.mirror]` table raises `ConfigError`, which kachery shows as a warning.
    """
    if not config.plugin_settings(PLUGIN_NAME).get("select_on_hosts"):
        return None  # the common case: nothing to decide, nothing to validate
    settings = MirrorSettings.from_config(config)
    if settings.url and settings.matches_host(socket.gethostname()):
        return PLUGIN_NAME
    return None
