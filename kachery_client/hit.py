"""The fast path of `kachery-client load-file URI`: an object already in the embedded
storage, found without the `Client` methods, the backends or the store classes.

A hit costs little beyond the interpreter's start, so what it imports is most of its
time. This module asks the same questions the full path asks, through the same code: the
one config resolver, the one URI parser, the backend selection with the registry's disk
cache, and the storage directory's own hit lookup (`PresentObjects`, which
`LocalStorage.find` starts with). It answers only when all of them say "the embedded
backend, and the object is here"; anything else (a miss, a link, a node answering,
another backend, an expected node ID, a stale registry cache, any error) is None, and the
caller runs the full command, which then gives the same answer or the same error.
"""

from __future__ import annotations

from typing import Optional

from kachery_client.backends.registry import cached_registry
from kachery_client.backends.selection import select_backend
from kachery_core.content.uri import parse_uri
from kachery_core.settings.config import resolve_config
from kachery_core.store.present import PresentObjects


def load_hit(uri: str) -> Optional[str]:
    """The path `load-file URI` (no options) would print, when it is a plain local hit."""
    try:
        return _load_hit(uri)
    except Exception:  # the full path reports it, the way it reports everything
        return None


def _load_hit(uri: str) -> Optional[str]:
    parsed = parse_uri(uri)  # a sha1dir:// path, or no URI at all: the full path
    config = resolve_config({}, explicit_source="command line")
    registry = cached_registry()
    if registry is None or registry.has_selectors or "local" not in registry.backends:
        return None  # the answer needs the plugins themselves
    if select_backend(config, registry).name != "local" or config.expected_node_id:
        return None  # another backend, or a node ID to check first
    path = PresentObjects(config.storage_dir, config.fsync).find_present(parsed.sha1)
    return None if path is None else str(path)
