"""How much the storage directory holds, as the overview and /metrics show it.

One function, `storage_use`, so the figures can come from elsewhere later (a pinned and
cached split, a limit) without touching the pages. It walks the directory (objects, link
records, quarantine, staging files) on a worker thread each time it is asked: linear in
the number of objects, which an index of the store (storage limits) will replace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

from kachery_core.store.layout import LINK_SUFFIX
from kachery_core.store.link_record import LinkRecord
from kachery_core.store.local import LocalStorage


def storage_use(storage: LocalStorage) -> Dict[str, int]:
    """objects/objectBytes (stored copies), links/linkedBytes (files linked in place),
    quarantined/quarantinedBytes, tempFiles/tempBytes (staging files)."""
    figures = {"objects": 0, "objectBytes": 0, "links": 0, "linkedBytes": 0}
    for path, size in _files(storage.root / "sha1", depth=4):
        if path.endswith(LINK_SUFFIX):
            figures["links"] += 1
            figures["linkedBytes"] += _linked_size(path)
        else:
            figures["objects"] += 1
            figures["objectBytes"] += size
    figures["quarantined"], figures["quarantinedBytes"] = _count(storage.quarantine_dir)
    figures["tempFiles"], figures["tempBytes"] = _count(storage.temp_dir)
    return figures


def _count(directory: Path) -> Tuple[int, int]:
    count = total = 0
    for _, size in _files(directory, depth=1):
        count += 1
        total += size
    return count, total


def _files(directory: Path, depth: int) -> Iterator[Tuple[str, int]]:
    """(path, size) of the regular files `depth` levels below `directory` (symlinks skipped)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            if depth > 1 and entry.is_dir(follow_symlinks=False):
                yield from _files(Path(entry.path), depth - 1)
            elif depth == 1 and entry.is_file(follow_symlinks=False):
                yield entry.path, entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # removed while we looked


def _linked_size(path: str) -> int:
    try:
        with open(path, "rb") as f:
            record: Optional[LinkRecord] = LinkRecord.from_bytes(f.read(65536))
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return record.size if record is not None else 0
