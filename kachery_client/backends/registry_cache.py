"""An on-disk memo of the backend registry, so that ordinary commands skip plugin loading.

The cache holds what the plugins' `kachery_register_backends` hooks announced, which
plugins are broken and why (with their tracebacks, for `--debug`), which announced
backends were refused, and whether any plugin has a selection hook. It is keyed on
everything that could change those answers: the interpreter, kachery's version, the
`sys.path` directories (but the script's own, `sys.path[0]`) with the modification times
of the package metadata in them (installing, upgrading or removing any package changes
these), and the modification
times of the plugin modules' own files (for plugins installed in editable mode). Any
mismatch, or any problem reading the cache, means a full rebuild through pluggy.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional

from kachery_core.atomic_file import write_atomically
from kachery_core.settings.paths import user_cache_dir

FORMAT = 3
"""Bumped whenever the document's fields change: an older cache is then rebuilt."""

Memo = Dict[str, Any]
"""What the registry announced, as `BackendRegistry.to_memo` writes it (plain JSON)."""


def cache_path() -> Path:
    return user_cache_dir() / f"registry-{zlib.crc32(sys.prefix.encode()):08x}.json"


def load() -> Optional[Memo]:
    """The cached memo, or None when there is none or it may be out of date.

    `memo["module_files"]` lists the plugin modules whose modification times are part of
    the key; the rest is the registry's to read (`BackendRegistry.from_memo`).
    """
    try:
        doc = json.loads(cache_path().read_text())
        if doc["format"] != FORMAT or doc["key"] != _fingerprint():
            return None
        memo = doc["registry"]
        if doc["module_mtimes"] != _mtimes(memo["module_files"]):
            return None
        return dict(memo)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(memo: Memo) -> None:
    """Write the cache atomically; a read-only home directory only costs the rebuild."""
    doc = {
        "format": FORMAT,
        "key": _fingerprint(),
        "module_mtimes": _mtimes(memo["module_files"]),
        "registry": memo,
    }
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(doc).encode(), mode=None)
    except OSError:
        pass


def _fingerprint() -> List[Any]:
    from kachery_core import __version__

    parts: List[Any] = [sys.prefix, sys.version, __version__]
    # sys.path[0] is the running script's directory (or the cwd): never where packages
    # are installed, and it differs between a console script and `python -c`.
    for entry in sys.path[1:]:
        try:
            with os.scandir(entry or ".") as it:
                metas = sorted(
                    [e.name, e.stat().st_mtime_ns]  # lists: the key must survive JSON
                    for e in it
                    if e.name.endswith((".dist-info", ".egg-info", ".egg-link", ".pth"))
                )
            parts.append([entry, os.stat(entry or ".").st_mtime_ns, metas])
        except OSError:
            parts.append([entry, None])
    return parts


def _mtimes(files: List[str]) -> List[Optional[int]]:
    result: List[Optional[int]] = []
    for name in files:
        try:
            result.append(os.stat(name).st_mtime_ns if name else None)
        except OSError:
            result.append(None)
    return result
