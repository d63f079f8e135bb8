"""Where the config files are and what one holds, checked: settings, profiles, plugins.

The user file is `$KACHERY_CONFIG`, else `<user config dir>/kachery/config.toml`; the
system file is `$KACHERY_SYSTEM_CONFIG`, else `/etc/kachery/config.toml`. Every value in a
file is parsed when the file is read, even one the environment overrides, so a typo in a
file is reported the first time it is read rather than the day it matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

from kachery_core.errors import ConfigError
from kachery_core.records import dataclass
from kachery_core.secret_files import warn_if_exposed
from kachery_core.settings.schema import SETTINGS, canonical_key
from kachery_core.settings.toml import read_toml_file

CONFIG_ENV = "KACHERY_CONFIG"
SYSTEM_CONFIG_ENV = "KACHERY_SYSTEM_CONFIG"
DEFAULT_SYSTEM_CONFIG = "/etc/kachery/config.toml"


def default_config_path(env: Mapping[str, str]) -> Path:
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    from kachery_core.settings.paths import user_config_dir

    return user_config_dir() / "config.toml"


def system_config_path(env: Mapping[str, str]) -> Path:
    return Path(env.get(SYSTEM_CONFIG_ENV) or DEFAULT_SYSTEM_CONFIG).expanduser()


def read_config_file(path: Path) -> Dict[str, Any]:
    """Parse a TOML config file; a missing file is an empty config."""
    hint = f"fix it, or point {CONFIG_ENV} at another file"
    return read_toml_file(path, "config file", hint) or {}


@dataclass(frozen=True)
class Layer:
    """The plain settings of one place (a file's top level, or one profile in a file)."""

    values: Dict[str, Any]
    source: str
    plugins: Dict[str, Dict[str, Any]]


class ConfigFile:
    """A parsed, validated config file: top-level settings, profiles and plugin tables."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.label = f"{kind} {path}"
        data = read_config_file(path)
        self.top = self._layer(data, self.label, f"{path}", allow_profile=True)
        profiles = data.get("profiles", {})
        if not isinstance(profiles, dict):
            raise ConfigError(f"[profiles] in {path} must be a table of tables")
        self.profiles: Dict[str, Layer] = {}
        for name, table in profiles.items():
            if not isinstance(table, dict):
                raise ConfigError(f"profile {name!r} in {path} must be a table ([profiles.{name}])")
            self.profiles[name] = self._layer(
                table, f"profile {name} in {path}", f"[profiles.{name}] in {path}", False
            )
        layers = [self.top, *self.profiles.values()]
        if any("auth_token" in layer.values for layer in layers):
            warn_if_exposed(path, "config file", "the auth_token")

    def _layer(self, table: Dict[str, Any], source: str, where: str, allow_profile: bool) -> Layer:
        values: Dict[str, Any] = {}
        plugins: Dict[str, Dict[str, Any]] = {}
        for key, raw in table.items():
            if key == "plugins":
                if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
                    raise ConfigError(f"plugins in {where} must hold tables: [plugins.NAME]")
                plugins = raw
                continue
            if key == "profiles" and allow_profile:
                continue
            name = canonical_key(key)
            if name not in SETTINGS or (name == "profile" and not allow_profile):
                known = [k for k in SETTINGS if allow_profile or k != "profile"]
                raise ConfigError(
                    f"unknown setting {key!r} in {where}",
                    "known settings: " + ", ".join(known + ["[profiles.NAME]", "[plugins.NAME]"]),
                )
            if name in values:
                raise ConfigError(
                    f"both {name!r} and {SETTINGS[name].alt_key!r} are set in {where}",
                    f"they are two spellings of one setting; keep {name!r}",
                )
            try:  # every value is checked, even ones the environment overrides
                SETTINGS[name].parse(raw)
            except ValueError as exc:
                raise ConfigError(f"invalid value {raw!r} for {key} in {where}", str(exc)) from None
            values[name] = raw
        return Layer(values, source, plugins)
