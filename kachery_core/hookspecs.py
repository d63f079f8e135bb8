"""The hooks a kachery plugin can implement. Built-in backends use them too.

A plugin is a module (or object) with functions named like the specs below, marked
with `kachery_core.hookspecs.hookimpl`, and registered through the `kachery.plugins`
entry-point group. See plugins.md for a worked example of each hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import pluggy

if TYPE_CHECKING:
    from .config import Config
    from .plugins import BackendSpec

PROJECT_NAME = "kachery"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def kachery_register_backends() -> List[BackendSpec]:
    """Called once per process, when kachery first needs to know which backends exist.

    Return a list of `BackendSpec`: each names a backend and the `module:Class` of its
    `DaemonTransport`. The class is imported only when that backend is used, so keep
    this hook cheap and free of heavy imports.

        @hookimpl
        def kachery_register_backends():
            return [BackendSpec("mirror", "kachery_mirror.transport:MirrorTransport",
                                "read-only objects from a web server", requires=("requests",))]
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def kachery_select_backend(config: Config) -> Optional[str]:
    """Called when no backend was chosen explicitly (flag, environment or config file).

    Return a backend name to use it, or None to leave the choice to the next plugin and
    finally to kachery's automatic rules (offline directory, remote host, local node,
    embedded storage). The first non-None answer wins. Do no slow work here: it runs on
    every command.

        @hookimpl
        def kachery_select_backend(config):
            if socket.gethostname().startswith("lab-"):
                return "mirror"
            return None
    """
    raise NotImplementedError
