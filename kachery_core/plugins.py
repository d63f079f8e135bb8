"""The backend registry: which backends exist, who provides them, and loading them lazily.

Plugins are found through the `kachery.plugins` entry-point group; the built-in backends
(`kachery_transports.builtin`) are registered the same way a third-party plugin is, through
the `kachery_register_backends` hook. A backend's module is imported only when it is used,
and a missing dependency is reported with the command that installs it.

A plugin that fails to import, raises inside a hook, or claims a name another plugin
already has, is recorded in `broken` and never stops the other backends from working.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, Type

from .errors import BackendError

if TYPE_CHECKING:
    import pluggy

    from .transport import DaemonTransport

ENTRY_POINT_GROUP = "kachery.plugins"
BUILTIN_PACKAGE = "kachery-client"


@dataclass(frozen=True)
class BackendSpec:
    """A backend as a plugin announces it.

    `target` is `"module:ClassName"` of a `DaemonTransport` subclass; `requires` lists the
    pip distributions it needs beyond kachery, named in the error when one is missing.
    """

    name: str
    target: str
    summary: str
    requires: Tuple[str, ...] = ()
    package: str = field(default="", compare=False)
    version: str = field(default="", compare=False)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    package: str
    version: str


class BackendRegistry:
    """All known backends, by name."""

    def __init__(self, from_cache: bool = False) -> None:
        self.backends: Dict[str, BackendSpec] = {}
        self.broken: Dict[str, str] = {}
        self.plugins: List[PluginInfo] = []
        self.module_files: List[str] = []
        self.has_selectors = False
        """True when some plugin implements `kachery_select_backend`."""
        self.from_cache = from_cache
        self._classes: Dict[str, Type[DaemonTransport]] = {}
        self._plugin_manager: Optional[pluggy.PluginManager] = None

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        if self._plugin_manager is None:
            self._plugin_manager = _new_plugin_manager()
        return self._plugin_manager

    def names(self) -> List[str]:
        return sorted(self.backends)

    def get(self, name: str) -> BackendSpec:
        if name in self.backends:
            return self.backends[name]
        if name in self.broken:
            raise BackendError(f"backend {name!r} is broken: {self.broken[name]}")
        known = ", ".join(self.names()) or "none"
        raise BackendError(
            f"unknown backend {name!r}",
            f"installed backends: {known} (see `kachery-client backends`)",
        )

    def load(self, name: str) -> Type[DaemonTransport]:
        """Import the backend's transport class, explaining a missing dependency."""
        if name in self._classes:
            return self._classes[name]
        spec = self.get(name)
        module_name, _, class_name = spec.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            needs = " ".join(spec.requires) or missing
            raise BackendError(
                f"backend {name!r} needs {missing!r}, which is not installed",
                f"install it with: pip install {needs}",
            ) from None
        try:
            cls = getattr(module, class_name)
        except AttributeError:
            raise BackendError(
                f"backend {name!r} ({spec.package}) points at {spec.target}, which does not exist"
            ) from None
        self._classes[name] = cls
        return cls

    def add_plugin(self, plugin: object, info: PluginInfo) -> None:
        """Register one plugin module and collect the backends it announces."""
        pm = self.plugin_manager
        try:
            pm.register(plugin, name=info.name)
        except Exception as exc:  # a plugin that does not even register
            self.broken[info.name] = f"{info.package}: {type(exc).__name__}: {exc}"
            return
        self.plugins.append(info)
        if any(i.plugin is plugin for i in pm.hook.kachery_select_backend.get_hookimpls()):
            self.has_selectors = True
        for impl in pm.hook.kachery_register_backends.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            try:
                specs: List[BackendSpec] = list(impl.function() or [])  # type: ignore[call-overload]
            except Exception as exc:
                self.broken[info.name] = f"{info.package}: {type(exc).__name__}: {exc}"
                pm.unregister(plugin)
                return
            for spec in specs:
                self._add_backend(spec, info)

    def _add_backend(self, spec: BackendSpec, info: PluginInfo) -> None:
        if not isinstance(spec, BackendSpec):
            self.broken[info.name] = f"{info.package}: returned {spec!r}, not a BackendSpec"
            return
        existing = self.backends.get(spec.name)
        if existing is not None:
            del self.backends[spec.name]
            self.broken[spec.name] = (
                f"claimed by both {existing.package} and {info.package}; uninstall one of them"
            )
            return
        if spec.name in self.broken:
            return
        self.backends[spec.name] = BackendSpec(
            spec.name, spec.target, spec.summary, tuple(spec.requires), info.package, info.version
        )

    def select_from_plugins(self, config: object) -> Tuple[Optional[str], Optional[str]]:
        """Ask plugins' `kachery_select_backend` hooks; (name, plugin) of the first answer."""
        if not self.has_selectors:
            return None, None
        if self.from_cache:  # the hooks themselves are needed: load the plugins for real
            fresh = _build_registry()
            self._plugin_manager = fresh.plugin_manager
        caller = self.plugin_manager.hook.kachery_select_backend
        for impl in reversed(caller.get_hookimpls()):
            try:
                answer = impl.function(config=config)
            except Exception as exc:
                reason = f"kachery_select_backend raised {exc!r}"
                self.broken[impl.plugin_name] = reason
                import sys

                print(
                    f"Warning: plugin {impl.plugin_name!r} ignored: {reason}",
                    file=sys.stderr,
                )
                continue
            if answer is not None:
                return str(answer), impl.plugin_name
        return None, None


def _new_plugin_manager() -> pluggy.PluginManager:
    import pluggy

    from . import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _scan_entry_points() -> List[Tuple[str, str, str, str]]:
    """(plugin name, module, distribution, version) for every `kachery.plugins` entry point."""
    from importlib import metadata

    found = []
    seen = set()
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            name = dist.metadata["Name"] or "?"
            key = (ep.name, ep.value)
            if key in seen:
                continue
            seen.add(key)
            found.append((ep.name, ep.value, name, dist.version))
    return found


_registry: Optional[BackendRegistry] = None


def get_registry() -> BackendRegistry:
    """The process-wide registry: built-ins first, then every installed plugin.

    Building it means importing pluggy, scanning every installed distribution and
    importing every plugin: more than the rest of a `load-file` costs. So what the hooks
    announced is cached on disk (`registry_cache`), keyed on the installed packages, and
    pluggy is loaded only when that key changes or a plugin has a selection hook.
    """
    global _registry
    if _registry is None:
        from . import registry_cache

        _registry = registry_cache.load() or _build_registry()
        if not _registry.from_cache:
            registry_cache.save(_registry)
    return _registry


def _build_registry() -> BackendRegistry:
    from kachery_core import __version__
    from kachery_transports import builtin

    registry = BackendRegistry()
    registry.module_files.append(builtin.__file__ or "")
    registry.add_plugin(builtin, PluginInfo("builtin", BUILTIN_PACKAGE, __version__))
    for plugin_name, target, package, version in _scan_entry_points():
        info = PluginInfo(plugin_name, package, version)
        try:
            module = importlib.import_module(target.partition(":")[0])
        except Exception as exc:
            registry.broken[plugin_name] = f"{package}: import failed: {type(exc).__name__}: {exc}"
            continue
        registry.module_files.append(getattr(module, "__file__", None) or "")
        registry.add_plugin(module, info)
    return registry


def reset_registry() -> None:
    """Forget the cached registry (tests install and remove plugins)."""
    global _registry
    _registry = None
