"""Batch primitives a backend may use to move many objects at once.

They live below the backends (and not with the client's directory operations) because a
backend's own `load_files` runs its batches with them and reports progress through them.
"""

from __future__ import annotations

import threading
from typing import Callable, List, Optional, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchReport = Callable[[int, int], None]
"""Called with (files done, bytes done) as a batch goes on."""


class BatchProgress:
    """Counts files and bytes across a batch whose files move on several threads."""

    def __init__(self, report: Optional[BatchReport]) -> None:
        self._report = report
        self._lock = threading.Lock()
        self.files = 0
        self.bytes = 0

    def for_file(self) -> FileProgress:
        return FileProgress(self)

    def add(self, files: int, size: int) -> None:
        with self._lock:
            self.files += files
            self.bytes += size
            if self._report is not None:
                self._report(self.files, self.bytes)


class FileProgress:
    """One file's bytes, passed on to its batch's totals; `done(size)` when it ends."""

    def __init__(self, batch: BatchProgress) -> None:
        self._batch = batch
        self._seen = 0

    def __call__(self, done: int) -> None:
        self._batch.add(0, done - self._seen)
        self._seen = done

    def done(self, size: int) -> None:
        self._batch.add(1, size - self._seen)
        self._seen = size


def run_batch(items: Sequence[T], work: Callable[[T], R], parallel: int) -> List[R]:
    """`[work(item) for item in items]`, on up to `parallel` threads, results in order.

    The first failure stops the batch: what has not started is cancelled, and the
    failure is raised once the started ones end.
    """
    if parallel <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="kachery-batch") as pool:
        futures = [pool.submit(work, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
