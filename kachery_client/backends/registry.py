"""The backend registry: which backends exist, who provides them, and loading them lazily.

Plugins are found through the `kachery.plugins` entry-point group; kachery's own backends
are registered the same way, from the modules named in `BUILTIN_PLUGINS` (imported by
name, so this layer never imports the transport layer by an import statement). A
backend's module is imported only when it is used, and a missing dependency is reported
with the command that installs it.

Hooks are called through pluggy, one plugin at a time (`PluginManager.subset_hook_caller`
leaves the other plugins out of the call). That way each `BackendSpec` is attributed to
the distribution that announced it, and a plugin that raises, returns junk or answers
with an unknown backend is named and skipped while the others still count; pluggy's
`tryfirst`, `trylast`, `wrapper` and `hookwrapper` apply to each plugin's own
implementations. A plugin that fails to import, raises inside a hook, or claims a name
another third-party plugin also claims, is recorded in `broken` (with its traceback, for
`--debug`); one that claims a built-in backend's name is recorded in `refused` and the
built-in is kept. Neither ever stops the other backends from working.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Type

from kachery_client.backends.plugin_hooks import (
    announced,
    call_order,
    check_hook_names,
    implements,
    new_plugin_manager,
    only_plugin,
)
from kachery_core.backend.spec import BackendSpec
from kachery_core.errors import BackendError
from kachery_core.records import dataclass

if TYPE_CHECKING:
    import pluggy

    from kachery_core.backend.base import Backend

__all__ = [
    "BUILTIN_PLUGINS",
    "BackendRegistry",
    "BackendSpec",  # re-exported: third-party plugins import it from here
    "BrokenBackendError",
    "KacheryPluginWarning",
    "PluginInfo",
    "cached_registry",
    "get_registry",
    "reset_registry",
]

ENTRY_POINT_GROUP = "kachery.plugins"
BUILTIN_PACKAGE = "kachery-lab"
BUILTIN_PLUGINS: Tuple[str, ...] = ("kachery_transports.builtin",)
"""Modules implementing kachery's own hooks; each is registered under its last name part."""


class KacheryPluginWarning(UserWarning):
    """A plugin misbehaved at run time and was skipped; kachery went on without it.

    `plugin_traceback` holds the plugin's own traceback (shown by the CLI under --debug).
    """

    def __init__(self, message: str, plugin_traceback: str = "") -> None:
        super().__init__(message)
        self.plugin_traceback = plugin_traceback


class BrokenBackendError(BackendError):
    """The backend asked for is broken; `plugin_traceback` is why, when a plugin raised."""

    def __init__(self, message: str, plugin_traceback: str = "") -> None:
        super().__init__(message)
        self.plugin_traceback = plugin_traceback


@dataclass(frozen=True)
class PluginInfo:
    name: str
    package: str
    version: str
    builtin: bool = False
    """One of kachery's own (`BUILTIN_PLUGINS`): its backend names cannot be taken over."""


class BackendRegistry:
    """All known backends, by name."""

    def __init__(self, from_cache: bool = False) -> None:
        self.backends: Dict[str, BackendSpec] = {}
        self.broken: Dict[str, str] = {}
        """Plugin or backend name -> why it cannot be used."""
        self.tracebacks: Dict[str, str] = {}
        """Plugin name -> the formatted traceback of its failure (same keys as `broken`)."""
        self.refused: List[Tuple[str, str]] = []
        """(backend name, reason): backends a plugin announced that were not registered."""
        self.plugins: List[PluginInfo] = []
        self.module_files: List[str] = []
        self.has_selectors = False
        """True when some plugin implements `kachery_select_backend`."""
        self.from_cache = from_cache
        self._owners: Dict[str, PluginInfo] = {}
        self._claimants: Dict[str, List[str]] = {}
        """Backend name -> the third-party packages that all claimed it."""
        self._classes: Dict[str, Type[Backend]] = {}
        self._plugin_manager: Optional[pluggy.PluginManager] = None

    def to_memo(self) -> Dict[str, Any]:
        """What the hooks announced, as plain JSON for `registry_cache`."""
        return {
            "backends": [
                [s.name, s.target, s.summary, list(s.requires), s.package, s.version]
                for s in self.backends.values()
            ],
            "broken": self.broken,
            "tracebacks": self.tracebacks,
            "refused": [list(each) for each in self.refused],
            "plugins": [[p.name, p.package, p.version, p.builtin] for p in self.plugins],
            "module_files": self.module_files,
            "has_selectors": self.has_selectors,
        }

    @classmethod
    def from_memo(cls, memo: Dict[str, Any]) -> BackendRegistry:
        """The registry `to_memo` described; raises KeyError/TypeError/ValueError if damaged."""
        registry = cls(from_cache=True)
        for name, target, summary, requires, package, version in memo["backends"]:
            registry.backends[name] = BackendSpec(
                name, target, summary, tuple(requires), package, version
            )
        registry.broken = dict(memo["broken"])
        registry.tracebacks = dict(memo["tracebacks"])
        registry.refused = [(name, reason) for name, reason in memo["refused"]]
        registry.plugins = [PluginInfo(*p) for p in memo["plugins"]]
        registry.module_files = list(memo["module_files"])
        registry.has_selectors = bool(memo["has_selectors"])
        return registry

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        if self._plugin_manager is None:
            self._plugin_manager = new_plugin_manager()
        return self._plugin_manager

    def names(self) -> List[str]:
        return sorted(self.backends)

    def get(self, name: str, source: Optional[str] = None) -> BackendSpec:
        """The backend called `name`; `source` (where the name was set) goes in the error."""
        if name in self.backends:
            return self.backends[name]
        if name in self.broken:
            raise BrokenBackendError(
                f"backend {name!r} is broken: {self.broken[name]}", self.tracebacks.get(name, "")
            )
        where = f" (set by {source})" if source else ""
        known = ", ".join(self.names()) or "none"
        raise BackendError(
            f"unknown backend {name!r}{where}",
            f"installed backends: {known} (see `kachery-client backends`)",
        )

    def load(self, name: str) -> Type[Backend]:
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
            check_hook_names(pm, plugin)
            results = only_plugin(pm, plugin, "kachery_register_backends")()
        except Exception as exc:  # it does not register, or its hook raised
            self.mark_broken(info.name, f"{info.package}: {_describe(exc)}", exc)
            if pm.is_registered(plugin):
                pm.unregister(plugin)
            return
        self.plugins.append(info)
        if implements(pm, plugin, "kachery_select_backend"):
            self.has_selectors = True
        for spec in announced(results):
            self._add_backend(spec, info)

    def mark_broken(self, name: str, reason: str, exc: Optional[BaseException] = None) -> None:
        """Record why plugin (or backend) `name` cannot be used, with `exc`'s traceback."""
        self.broken[name] = reason
        if exc is not None:
            import traceback

            self.tracebacks[name] = "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)
            )

    def _add_backend(self, spec: object, info: PluginInfo) -> None:
        if not isinstance(spec, BackendSpec):
            self.mark_broken(info.name, f"{info.package}: returned {spec!r}, not a BackendSpec")
            return
        owner = self._owners.get(spec.name)
        if owner is not None and owner.builtin != info.builtin:
            builtin, other = (owner, info) if owner.builtin else (info, owner)
            self.refused.append(
                (
                    spec.name,
                    f"{other.package} {other.version} also announces {spec.name!r}, "
                    f"a backend built into kachery ({builtin.package}); the built-in one is used",
                )
            )
            if info.builtin:
                self._register_backend(spec, info)
            return
        if spec.name in self._claimants:
            self._claimants[spec.name].append(info.package)
            self._refuse_claimed(spec.name)
            return
        if owner is not None:
            del self.backends[spec.name]
            self._claimants[spec.name] = [owner.package, info.package]
            self._refuse_claimed(spec.name)
            return
        if spec.name in self.broken:
            return
        self._register_backend(spec, info)

    def _register_backend(self, spec: BackendSpec, info: PluginInfo) -> None:
        self._owners[spec.name] = info
        self.backends[spec.name] = BackendSpec(
            spec.name, spec.target, spec.summary, tuple(spec.requires), info.package, info.version
        )

    def _refuse_claimed(self, name: str) -> None:
        """Two third-party plugins claim one name: neither gets it (kachery cannot tell
        which one the user meant, and a silent winner would depend on install order)."""
        packages = self._claimants[name]
        self.broken[name] = (
            f"claimed by both {', '.join(packages[:-1])} and {packages[-1]}; uninstall one of them"
        )

    def select_from_plugins(self, config: object) -> Tuple[Optional[str], Optional[str]]:
        """The first installed backend a `kachery_select_backend` hook names: (name, plugin).

        Plugins are asked one at a time, in the order pluggy calls implementations
        (`tryfirst` ones first, then the most recently registered, `trylast` last; a plugin
        implementing the hook only as a wrapper comes after those). A plugin that raises,
        or names a backend that is not installed, gets a `KacheryPluginWarning` naming it,
        and the next plugin is asked.
        """
        if not self.has_selectors:
            return None, None
        if self.from_cache:  # the hooks themselves are needed: load the plugins for real
            fresh = _build_registry()
            self._plugin_manager = fresh.plugin_manager
        pm = self.plugin_manager
        for plugin_name in call_order(pm, "kachery_select_backend"):
            plugin = pm.get_plugin(plugin_name)
            try:
                answer = only_plugin(pm, plugin, "kachery_select_backend")(config=config)
            except Exception as exc:
                reason = f"kachery_select_backend raised {_one_line(repr(exc))}"
                self.mark_broken(plugin_name, reason, exc)
                _warn(f"plugin {plugin_name!r} ignored: {reason}", self.tracebacks[plugin_name])
                continue
            if answer is None:
                continue
            if not isinstance(answer, str) or answer not in self.backends:
                _warn(
                    f"plugin {plugin_name!r}: kachery_select_backend answered "
                    f"{_one_line(repr(answer), 200)}, "
                    "which is not an installed backend (see `kachery-client backends`); "
                    "answer ignored"
                )
                continue
            return answer, plugin_name
        return None, None


def _warn(message: str, plugin_traceback: str = "") -> None:
    """Report a plugin failure once per process (the default warning filter)."""
    warnings.warn(KacheryPluginWarning(message, plugin_traceback), stacklevel=3)


def _describe(exc: BaseException) -> str:
    """`Type: message` on one line (pluggy's validation messages span several)."""
    return _one_line(f"{type(exc).__name__}: {exc}")


def _one_line(text: str, limit: int = 1000) -> str:
    from kachery_core.protocol.wire import (
        one_line,  # only on failures: keeps the warm path's imports small
    )

    return one_line(text, limit)


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
_registry_lock = threading.Lock()


def get_registry() -> BackendRegistry:
    """The process-wide registry: built-ins first, then every installed plugin.

    Building it means importing pluggy, scanning every installed distribution and
    importing every plugin: more than the rest of a `load-file` costs. So what the hooks
    announced is cached on disk (`registry_cache`), keyed on the installed packages, and
    pluggy is loaded only when that key changes or a plugin has a selection hook.
    """
    global _registry
    registry = _registry
    if registry is None:
        with _registry_lock:  # threads of one process (a script's pool) build it once
            registry = _registry
            if registry is None:
                registry = _registry = _cached_or_built_registry()
    return registry


def cached_registry() -> Optional[BackendRegistry]:
    """The process-wide registry if it is built or its disk cache is current, else None:
    for a caller that would rather give up than import pluggy (`kachery_client.hit`)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = _registry_from_cache()
        return _registry


def _registry_from_cache() -> Optional[BackendRegistry]:
    from kachery_client.backends import registry_cache

    memo = registry_cache.load()
    if memo is not None:
        try:
            return BackendRegistry.from_memo(memo)
        except (KeyError, TypeError, ValueError):
            pass  # a damaged cache costs only the rebuild
    return None


def _cached_or_built_registry() -> BackendRegistry:
    from kachery_client.backends import registry_cache

    cached = _registry_from_cache()
    if cached is not None:
        return cached
    registry = _build_registry()
    registry_cache.save(registry.to_memo())
    return registry


def _build_registry() -> BackendRegistry:
    from kachery_core import __version__

    registry = BackendRegistry()
    for module_name in BUILTIN_PLUGINS:
        info = PluginInfo(module_name.rpartition(".")[2], BUILTIN_PACKAGE, __version__, True)
        _add_plugin_module(registry, module_name, info)
    for plugin_name, target, package, version in _scan_entry_points():
        _add_plugin_module(
            registry, target.partition(":")[0], PluginInfo(plugin_name, package, version)
        )
    return registry


def _add_plugin_module(registry: BackendRegistry, module_name: str, info: PluginInfo) -> None:
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        registry.mark_broken(info.name, f"{info.package}: import failed: {_describe(exc)}", exc)
        return
    registry.module_files.append(getattr(module, "__file__", None) or "")
    registry.add_plugin(module, info)


def reset_registry() -> None:
    """Forget the cached registry (tests install and remove plugins)."""
    global _registry
    _registry = None
