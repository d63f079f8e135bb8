"""The hooks a kachery plugin can implement. Built-in backends use them too.

A plugin is a module with functions named like the specs below, marked with
`kachery_core.backend.hookspecs.hookimpl`, and registered through the `kachery.plugins`
entry-point group. See plugins.md for a worked example of each hook.

Each plugin's hook implementations are called through pluggy, so `tryfirst`, `trylast`,
`wrapper=True` and `hookwrapper=True` behave as pluggy documents; kachery asks each plugin
on its own (see `kachery_client.backends.registry`), so a wrapper wraps its own plugin's
implementations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import pluggy

from kachery_core.backend.spec import BackendSpec

if TYPE_CHECKING:
    from kachery_core.settings.config import Config

__all__ = ["PROJECT_NAME", "BackendSpec", "hookimpl", "hookspec"]

PROJECT_NAME = "kachery"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def kachery_register_backends() -> List[BackendSpec]:
    """Called once per plugin, when kachery (re)builds its registry of backends.

    Return a list of `BackendSpec`: each names a backend and the `module:Class` of its
    `Backend`. The class is imported only when that backend is used, so keep
    this hook cheap and free of heavy imports. What it returns is cached on disk until
    an installed package (or the plugin module itself) changes.

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
    embedded storage). The first non-None answer naming an installed backend wins; an
    answer naming no installed backend is ignored with a warning. Do no slow work here:
    it runs on every command.

        @hookimpl
        def kachery_select_backend(config):
            if socket.gethostname().startswith("lab-"):
                return "mirror"
            return None
    """
    raise NotImplementedError
