"""`BackendSpec`: what a plugin's `kachery_register_backends` hook returns.

It lives in a module of its own, free of pluggy, so that the hook specs, the registry and
the registry cache (which must stay cheap to import on warm commands) all share it
without importing one another. Plugins import it as `kachery_core.backend.hookspecs.BackendSpec`.
"""

from __future__ import annotations

from typing import Tuple

from kachery_core.records import dataclass, field


@dataclass(frozen=True)
class BackendSpec:
    """A backend as a plugin announces it.

    `target` is `"module:ClassName"` of a `Backend` subclass; `requires` lists the
    pip distributions it needs beyond kachery, named in the error when one is missing.
    `package` and `version` are filled in by the registry from the plugin's distribution.
    """

    name: str
    target: str
    summary: str
    requires: Tuple[str, ...] = ()
    package: str = field(default="", compare=False)
    version: str = field(default="", compare=False)
