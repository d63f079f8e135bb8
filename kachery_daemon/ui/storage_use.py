"""How much the storage directory holds, as the overview and /metrics show it.

The figures are the store's own `usage` (its index of origins and recency, the same
numbers `kachery-daemon usage` prints), flattened into the names the pages use; nothing
is walked, so the overview answers as fast on a store of a million objects as on an
empty one.
"""

from __future__ import annotations

from typing import Dict

from kachery_core.store.collect import usage
from kachery_core.store.index import CACHED, PINNED
from kachery_core.store.local import LocalStorage

_SHOWN = {
    PINNED: ("pinned", "pinnedBytes"),
    CACHED: ("cached", "cachedBytes"),
    "links": ("links", "linkedBytes"),
    "quarantine": ("quarantined", "quarantinedBytes"),
    "temporary": ("tempFiles", "tempBytes"),
}


def storage_use(storage: LocalStorage) -> Dict[str, int]:
    """pinned/cached objects and their bytes, objects/objectBytes (both together: the
    stored copies), links/linkedBytes (files linked in place), quarantined/quarantinedBytes
    and tempFiles/tempBytes (staging files)."""
    figures: Dict[str, int] = {}
    for key, part in usage(storage).items():
        if key in _SHOWN:
            count, size = _SHOWN[key]
            figures[count], figures[size] = part["count"], part["bytes"]
    figures["objects"] = figures["pinned"] + figures["cached"]
    figures["objectBytes"] = figures["pinnedBytes"] + figures["cachedBytes"]
    return figures
