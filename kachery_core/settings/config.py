"""The one place where settings are resolved.

Precedence, lowest first: built-in defaults < system config file < user config file <
the chosen profile < environment < explicit arguments (CLI flags or
`kachery_client.Client(...)` keywords). Every resolved value remembers where it came
from, so `kachery-client config` can show it.

The user file is TOML at `$KACHERY_CONFIG`, else `<user config dir>/kachery/config.toml`
(`~/.config/kachery/config.toml` on Linux); the system file (a lab's admin rolls it out)
is at `$KACHERY_SYSTEM_CONFIG`, else `/etc/kachery/config.toml`. Both look alike:

    storage_dir = "/data/kachery-storage"
    profile = "lab"                    # the profile used unless another is chosen

    [profiles.lab]                     # chosen with --profile lab or KACHERY_PROFILE=lab
    daemon_host = "kachery.lab.example.org"

    [plugins.mirror]                   # settings a plugin reads with plugin_settings()
    url = "http://files.lab.example.org/kachery"

A setting may have an older second spelling, accepted everywhere: `backend` is also
`transport` (config key, `Client(transport=...)`) and `KACHERY_TRANSPORT`. The
environment's own name wins when both variables are set; both keys in one table of a
file is an error, as neither could be said to win.

This module resolves; the pieces it puts together live beside it: `schema` (which settings
exist, `Setting` and `Config`), `parsers` (raw value to typed value), `files` (where the
config files are, what one may hold) and `write` (the one writer of a config file). Their
public names are re-exported here, the import path the rest of kachery and plugins use.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional

from kachery_core.errors import ConfigError
from kachery_core.settings.files import (
    CONFIG_ENV,
    DEFAULT_SYSTEM_CONFIG,
    SYSTEM_CONFIG_ENV,
    ConfigFile,
    Layer,
    default_config_path,
    read_config_file,
    system_config_path,
)
from kachery_core.settings.parsers import CHANNEL_NAME, NAME
from kachery_core.settings.schema import SETTINGS, Config, Resolved, Setting, canonical_key
from kachery_core.settings.write import set_config_file_value

__all__ = [
    "CHANNEL_NAME",
    "CONFIG_ENV",
    "DEFAULT_SYSTEM_CONFIG",
    "NAME",
    "SETTINGS",
    "SYSTEM_CONFIG_ENV",
    "Config",
    "Resolved",
    "Setting",
    "canonical_key",
    "default_config_path",
    "profile_source",
    "read_config_file",
    "resolve_config",
    "set_config_file_value",
    "system_config_path",
]


def resolve_config(
    explicit: Optional[Mapping[str, Any]] = None,
    env: Optional[Mapping[str, str]] = None,
    explicit_source: str = "command line",
) -> Config:
    """Resolve every setting from defaults, config files, profile, environment and `explicit`.

    Lowest first: default < system file < user file < the chosen profile < environment <
    explicit. The profile is chosen by `explicit`, else `KACHERY_PROFILE`, else `profile`
    in the user file, else in the system file; it may be defined in either file (the user
    file's keys win).
    """
    env = os.environ if env is None else env
    explicit = _explicit_settings(explicit or {})
    system = ConfigFile(system_config_path(env), "system config file")
    user = ConfigFile(default_config_path(env), "config file")
    layers = [system.top, user.top]
    profile = _chosen_profile(explicit, env, layers)
    if profile is not None:
        defined = [f.profiles[profile] for f in (system, user) if profile in f.profiles]
        if not defined:
            names = sorted(set(system.profiles) | set(user.profiles))
            raise ConfigError(
                f"unknown profile {profile!r} (chosen by {profile_source(explicit, env, layers)})",
                f"profiles defined in {user.path} and {system.path}: {', '.join(names) or 'none'}",
            )
        layers.extend(defined)
    values: Dict[str, Resolved] = {}
    for key, setting in SETTINGS.items():
        if key in explicit:
            raw, source, where = explicit[key], explicit_source, f"{explicit_source} ({key})"
        elif _env_name(setting, env):
            where = _env_name(setting, env)
            raw, source = env[where], f"environment {where}"
        else:
            layer = next((lay for lay in reversed(layers) if key in lay.values), None)
            if layer is None:
                default = setting.default
                parsed = None if default is None else setting.parse(default)
                values[key] = Resolved(parsed, "default")
                continue
            raw, source, where = layer.values[key], layer.source, f"{key} in {layer.source}"
        try:
            values[key] = Resolved(setting.parse(raw), source)
        except ValueError as exc:
            raise ConfigError(f"invalid value {raw!r} for {where}", str(exc)) from None
    plugins: Dict[str, Dict[str, Any]] = {}
    for layer in layers:
        for name, table in layer.plugins.items():
            plugins.setdefault(name, {}).update(table)
    return Config(values, user.path, system.path, plugins, env)


def _explicit_settings(explicit: Mapping[str, Any]) -> Dict[str, Any]:
    """The explicitly given settings by key (None: not given), alternate spellings merged."""
    settings: Dict[str, Any] = {}
    for key, value in explicit.items():
        name = canonical_key(key)
        if name not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r}", "known settings: " + ", ".join(SETTINGS))
        if value is None:
            continue
        if name in settings:
            raise ConfigError(
                f"both {name!r} and {SETTINGS[name].alt_key!r} given",
                "they are two spellings of one setting",
            )
        settings[name] = value
    return settings


def _env_name(setting: Setting[Any], env: Mapping[str, str]) -> str:
    """The environment variable that sets `setting` ("" if none): its own, else the alternate."""
    for name in (setting.env, setting.alt_env):
        if name and env.get(name):
            return name
    return ""


def _chosen_profile(
    explicit: Mapping[str, Any], env: Mapping[str, str], layers: List[Layer]
) -> Optional[str]:
    raw = explicit.get("profile") or env.get("KACHERY_PROFILE")
    if raw is None:
        raw = next(
            (lay.values["profile"] for lay in reversed(layers) if "profile" in lay.values), None
        )
    return None if raw is None else str(raw).strip()


def profile_source(explicit: Mapping[str, Any], env: Mapping[str, str], layers: List[Layer]) -> str:
    if explicit.get("profile"):
        return "--profile"
    if env.get("KACHERY_PROFILE"):
        return "KACHERY_PROFILE"
    return next(f"profile in {lay.source}" for lay in reversed(layers) if "profile" in lay.values)
