"""How the backend registry talks to pluggy: one plugin's hooks alone, the order pluggy
calls implementations in, and the checks on what a plugin registers.

pluggy itself is imported only when a plugin manager is made (`registry_cache` spares
ordinary commands that); the annotations name it for type checking only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

if TYPE_CHECKING:
    import pluggy


def only_plugin(pm: pluggy.PluginManager, plugin: object, hook_name: str) -> pluggy.HookCaller:
    """A caller of hook `hook_name` that runs `plugin`'s implementations alone, via pluggy."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(hook_name, remove_plugins=others)


def implements(pm: pluggy.PluginManager, plugin: object, hook_name: str) -> bool:
    return any(i.plugin is plugin for i in getattr(pm.hook, hook_name).get_hookimpls())


def call_order(pm: pluggy.PluginManager, hook_name: str) -> List[str]:
    """Names of the plugins implementing `hook_name`, in the order pluggy would call them."""
    impls = list(reversed(getattr(pm.hook, hook_name).get_hookimpls()))
    plain = [i for i in impls if not (i.hookwrapper or i.wrapper)]
    wrappers = [i for i in impls if i.hookwrapper or i.wrapper]
    order: List[str] = []
    for impl in plain + wrappers:
        if impl.plugin_name not in order:
            order.append(impl.plugin_name)
    return order


def check_hook_names(pm: pluggy.PluginManager, plugin: object) -> None:
    """Refuse an implementation of a hook kachery does not have (a typo would be silent)."""
    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec() and not all(
            i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin
        ):
            raise ValueError(f"{caller.name} is not a kachery hook (see plugins.md)")


def announced(results: object) -> List[object]:
    """The items of a `kachery_register_backends` result: one list per implementation."""
    if not isinstance(results, (list, tuple)):
        return [results]
    items: List[object] = []
    for each in results:
        if isinstance(each, (list, tuple)):
            items.extend(each)
        else:
            items.append(each)
    return items


def new_plugin_manager() -> pluggy.PluginManager:
    import pluggy

    from kachery_core.backend import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm
