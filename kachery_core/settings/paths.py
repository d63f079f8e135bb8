"""Per-user directories for kachery's config file and caches, by platform convention.

Linux and other Unix: `$XDG_CONFIG_HOME/kachery` (default `~/.config/kachery`) and
`$XDG_CACHE_HOME/kachery` (default `~/.cache/kachery`); macOS: `~/Library/Application
Support/kachery` and `~/Library/Caches/kachery`; Windows: `%APPDATA%\\kachery` and
`%LOCALAPPDATA%\\kachery\\Cache`. Computed here rather than with a library because it runs
on every command and must cost nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "kachery"


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path.home() / fallback


def user_config_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / APP
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def user_cache_dir() -> Path:
    if sys.platform == "win32":
        return (
            Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
            / APP
            / "Cache"
        )
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP
    return _xdg("XDG_CACHE_HOME", ".cache") / APP
