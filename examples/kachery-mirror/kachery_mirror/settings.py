"""The mirror's settings: the `[plugins.mirror]` table of kachery's config files, then env vars.

This module imports nothing heavy, because the selection hook reads it on every command.

    [plugins.mirror]
    url = "https://files.lab.example.org/kachery-storage"
    cache_dir = "/scratch/kachery-cache"   # default: kachery's storage_dir
    timeout = 30                           # seconds to wait for the server
    select_on_hosts = ["scope-*"]          # use the mirror automatically on these hosts

A profile can carry its own table (`[profiles.lab.plugins.mirror]`); kachery merges it
over the top-level one. The environment wins over the files, as it does for kachery's
own settings, and an empty variable counts as unset.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from kachery_core.errors import ConfigError

if TYPE_CHECKING:
    from kachery_core.settings.config import Config

PLUGIN_NAME = "mirror"
TABLE = "[plugins.mirror]"
URL_ENV = "KACHERY_MIRROR_URL"
CACHE_DIR_ENV = "KACHERY_MIRROR_CACHE_DIR"
TIMEOUT_ENV = "KACHERY_MIRROR_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
KNOWN_KEYS = ("url", "cache_dir", "timeout", "select_on_hosts")


@dataclass(frozen=True)
class MirrorSettings:
    """Resolved settings; `url` is None when neither the files nor the environment set it."""

    url: Optional[str]
    cache_dir: Path
    timeout: float
    select_on_hosts: Tuple[str, ...]
    config_file: Path
    """The user's config file, named in messages about missing settings."""

    @classmethod
    def from_config(cls, config: Config, env: Optional[Mapping[str, str]] = None) -> MirrorSettings:
        """Validate the table and the variables; a bad value is a `ConfigError` naming it."""
        env = config.environ if env is None else env
        table = config.plugin_settings(PLUGIN_NAME)
        unknown = sorted(set(table) - set(KNOWN_KEYS))
        if unknown:  # a typo must not silently do nothing
            raise ConfigError(
                f"unknown key {unknown[0]!r} in {TABLE} of the kachery config files",
                "known keys: " + ", ".join(KNOWN_KEYS),
            )
        url = _pick(env, URL_ENV, table, "url")
        cache_dir = _pick(env, CACHE_DIR_ENV, table, "cache_dir")
        timeout = _pick(env, TIMEOUT_ENV, table, "timeout")
        return cls(
            url=None if url is None else _parse_url(*url),
            cache_dir=config.storage_dir if cache_dir is None else _parse_dir(*cache_dir),
            timeout=DEFAULT_TIMEOUT if timeout is None else _parse_timeout(*timeout),
            select_on_hosts=_parse_hosts(table.get("select_on_hosts")),
            config_file=config.config_file,
        )

    def require_url(self) -> str:
        """The base URL, or a `ConfigError` that says both ways to set it."""
        if self.url is None:
            raise ConfigError(
                "the mirror backend needs the base URL of the web server to load from",
                f'set url = "http://..." in {TABLE} of {self.config_file} '
                "(or in [profiles.NAME.plugins.mirror]), "
                f"or set the environment variable {URL_ENV}",
            )
        return self.url

    def matches_host(self, hostname: str) -> bool:
        """True when a `select_on_hosts` pattern matches the host's full or short name."""
        names = {hostname.lower(), hostname.lower().split(".")[0]}
        return any(
            fnmatch.fnmatchcase(name, pattern.lower())
            for pattern in self.select_on_hosts
            for name in names
        )


def _pick(
    env: Mapping[str, str], var: str, table: Mapping[str, Any], key: str
) -> Optional[Tuple[Any, str]]:
    """(raw value, where it came from) with the environment winning; None when unset."""
    if env.get(var):
        return env[var], f"environment variable {var}"
    if key in table:
        return table[key], f"{key} in {TABLE}"
    return None


def _parse_url(raw: Any, where: str) -> str:
    text = str(raw).strip() if isinstance(raw, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"invalid mirror URL {raw!r} ({where})",
            "expected http(s)://host[:port]/path, the address of a published storage directory",
        )
    return text.rstrip("/")


def _parse_dir(raw: Any, where: str) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"invalid cache directory {raw!r} ({where})", "expected a directory path")
    return Path(os.path.expandvars(raw.strip())).expanduser().absolute()


def _parse_timeout(raw: Any, where: str) -> float:
    try:
        seconds = -1.0 if isinstance(raw, bool) else float(raw)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise ConfigError(
            f"invalid mirror timeout {raw!r} ({where})",
            "expected a number of seconds above 0 (at most 86400)",
        )
    return seconds


def _parse_hosts(raw: Any) -> Tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise ConfigError(
            f"invalid select_on_hosts {raw!r} in {TABLE}",
            'expected a list of host name patterns, for example ["scope-*", "lab-pc1"]',
        )
    return tuple(raw)
