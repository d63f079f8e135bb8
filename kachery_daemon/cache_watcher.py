"""The node keeps its storage within `max_cache_size` in the background.

Writes through the node already evict on the way (`LocalStorage`); this also catches what
other processes (a client on the same directory, a second node user) added. Between two
watermarks: when the objects pass the limit (high), least recently used cached objects
are evicted down to `LOW_WATERMARK` of it (low), so eviction runs in bursts, not per write.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Optional

from kachery_core.store.index import CACHED, PINNED, IndexUnavailable
from kachery_core.store.local import LocalStorage
from kachery_core.store.origins import LOW_WATERMARK

log = logging.getLogger("kachery.node")

CHECK_SECONDS = 10.0


class CacheWatcher:
    """A daemon thread that checks the storage's totals every `CHECK_SECONDS`."""

    def __init__(self, storage: LocalStorage, every: float = CHECK_SECONDS) -> None:
        self.storage = storage
        self.every = every
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._warned = False

    def start(self) -> None:
        if self.storage.max_cache_size is None:
            return
        self._thread = threading.Thread(target=self._run, name="kachery-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def check(self) -> None:
        """One round: evict down to the low watermark when past the limit."""
        limit = self.storage.max_cache_size
        if limit is None:
            return
        from kachery_core.store.collect import collect

        totals = self.storage.open_index().totals()
        if totals[CACHED][1] + totals[PINNED][1] <= limit:
            return
        report = collect(self.storage, int(limit * LOW_WATERMARK), wait=False)
        if report.evicted:
            log.info("evicted %d cached objects (%d bytes)", report.evicted, report.evicted_bytes)
        if report.pinned_over_limit and not self._warned:
            self._warned = True
            log.warning(
                "pinned objects alone take %d bytes, more than max_cache_size (%d); they stay",
                report.pinned_bytes,
                limit,
            )

    def _run(self) -> None:
        while True:  # at start (a node restarted with a lower limit), then periodically
            try:
                self.check()
            except (sqlite3.Error, IndexUnavailable, OSError) as exc:
                log.warning("could not keep the storage within max_cache_size: %s", exc)
            if self._stop.wait(self.every):
                return
