"""What `LocalStorage` tells the index of origins and recency (`index.py`) as it works.

A write whose caller expected a hash is a fetch (*cached*); one that computed its hash is
a store (*pinned*). Each is recorded before its object is renamed into place; a load hit
updates the object's last use. When a cached write takes the cache past
`max_cache_size`, least recently used cached objects are evicted down to the low
watermark (`LOW_WATERMARK` of the limit). A store the index cannot be written in (a
read-only directory) works as before, without bookkeeping.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import logging

from kachery_core.store.index import CACHED, PINNED, IndexUnavailable, StoreIndex

LOW_WATERMARK = 0.9
"""Eviction past the limit goes down to this fraction of it, so it does not run per write."""

DEFAULT_GRACE_PERIOD = 600.0
"""Seconds after its last use during which an object is never evicted."""


def _log() -> logging.Logger:
    """The store's logger; `logging` is imported only when there is something to say."""
    import logging

    return logging.getLogger("kachery.storage")


class IndexedStorage:
    """The bookkeeping half of `LocalStorage` (which sets `root`, `fsync`, the limits)."""

    root: Path
    fsync: bool
    max_cache_size: Optional[int]
    grace_period: float
    _index: Optional[StoreIndex]
    _index_off: bool
    _warned_pinned: bool

    def _init_bookkeeping(self, max_cache_size: Optional[int], grace_period: float) -> None:
        self.max_cache_size = max_cache_size
        self.grace_period = grace_period
        self._index = None
        self._index_off = False
        self._warned_pinned = False
        self._shared: Optional[int] = None
        self._evicting = threading.Lock()

    @property
    def shared_group_mode(self) -> int:
        """0 for a private store; for a group-shared one (its root is setgid) the mode
        bits its new directories get (files get the same less the execute bits)."""
        if self._shared is None:
            try:
                mode = os.stat(self.root).st_mode
            except OSError:
                mode = 0
            self._shared = (0o2770 | (mode & 0o005)) if mode & stat.S_ISGID else 0
        return self._shared

    @property
    def index(self) -> Optional[StoreIndex]:
        """The index, or None where it cannot be written (then nothing is recorded)."""
        if self._index is None and not self._index_off:
            shared = self.shared_group_mode
            self._index = StoreIndex(self.root, self.fsync, (shared & 0o666) if shared else None)
        return None if self._index_off else self._index

    def open_index(self) -> StoreIndex:
        """The index, opened (built if need be); `IndexUnavailable` if it cannot be."""
        index = self.index
        if index is None:
            raise IndexUnavailable(f"the index of {self.root} cannot be written here")
        index.db()
        return index

    def _note_write(self, sha1: str, size: int, cached: bool, final: Path) -> None:
        """Record a write about to be placed at `final` (before the rename)."""
        index = self._usable_index(writing=True)
        if index is None:
            return
        exists = cached and _is_file(final)
        try:
            index.record(sha1, size, CACHED if cached else PINNED, exists)
        except sqlite3.Error as exc:
            if not cached:
                raise  # a pin that cannot be recorded could be evicted later: refuse
            _log().warning("could not record %s in %s: %s", sha1, index.path, exc)

    def _note_link(self, sha1: str, size: int, is_link: bool) -> None:
        index = self._usable_index(writing=True)
        if index is not None:
            index.record(sha1, size, PINNED, False, is_link=is_link)

    def _note_use(self, sha1: str) -> None:
        index = self._usable_index()
        if index is None:
            return
        with contextlib.suppress(sqlite3.Error):  # recency is a hint: busy or read-only, skip
            index.touch(sha1)

    def _after_cached_write(self) -> None:
        """Keep the cache within `max_cache_size`: evict LRU cached objects past it."""
        limit = self.max_cache_size
        index = self._usable_index()
        if limit is None or index is None or not self._evicting.acquire(blocking=False):
            return
        try:
            totals = index.totals()
            if totals[CACHED][1] + totals[PINNED][1] <= limit:
                return
            from kachery_core.store.collect import collect

            report = collect(self, int(limit * LOW_WATERMARK), wait=False)  # type: ignore[arg-type]
            if report.pinned_over_limit and not self._warned_pinned:
                self._warned_pinned = True
                _log().warning(
                    "pinned objects in %s alone take %d bytes, more than max_cache_size "
                    "(%d); they stay (unpin or drop some to make room)",
                    self.root,
                    report.pinned_bytes,
                    limit,
                )
        except sqlite3.Error as exc:
            _log().warning("could not evict cached objects in %s: %s", self.root, exc)
        finally:
            self._evicting.release()

    def _usable_index(self, writing: bool = False) -> Optional[StoreIndex]:
        index = self.index
        if index is None:
            return None
        if getattr(index._local, "conn", None) is not None:
            return index
        if not self.root.is_dir():
            if not writing:
                return None  # nothing stored here yet: nothing to remember
            make_dirs(self.root, 0)
        try:
            index.db()
        except (IndexUnavailable, OSError):
            self._index_off = True
            return None
        except sqlite3.OperationalError as exc:  # busy for a minute: try again next time
            _log().warning("the index of %s is not usable now: %s", self.root, exc)
            return None
        return index


def make_dirs(directory: Path, shared_mode: int = 0) -> None:
    """`mkdir -p`; in a group-shared store each new directory gets `shared_mode`
    (setgid, group-writable) whatever the umask, so every member can add and remove."""
    if not shared_mode or directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        return
    missing = []
    path = directory
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        os.chmod(path, shared_mode)


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
