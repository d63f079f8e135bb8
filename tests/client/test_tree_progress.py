"""The batch progress bar: files and bytes, drawn only after a second, on stderr's terminal."""

from __future__ import annotations

import io
import threading
from typing import List

import pytest

from kachery_client.directories.operations import BatchProgress, run_batch
from kachery_core import progress as progress_bar
from kachery_core.progress import BatchProgressBar


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bar_shows_files_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_bar.time, "monotonic", clock)
    out = io.StringIO()
    bar = BatchProgressBar("storing", 1000, 4096 * 1000, out)
    bar(1, 4096)
    assert out.getvalue() == ""  # nothing during the first second
    clock.now += 2
    bar(500, 4096 * 500)
    shown = out.getvalue()
    assert "storing: 500/1000 files, [" in shown
    assert "50%" in shown and "2.0 MiB/3.9 MiB" in shown
    bar.close()
    assert out.getvalue().endswith("\n")


def test_an_unknown_count_shows_files_so_far(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_bar.time, "monotonic", clock)
    out = io.StringIO()
    bar = BatchProgressBar("loading", None, None, out)
    clock.now += 2
    bar(7, 7 * 4096)
    assert "loading: 7 files, 28.0 KiB" in out.getvalue()


def test_totals_add_up_across_threads() -> None:
    reports: List[tuple] = []
    lock = threading.Lock()

    def report(files: int, size: int) -> None:
        with lock:
            reports.append((files, size))

    counter = BatchProgress(report)

    def one(size: int) -> int:
        file_progress = counter.for_file()
        for done in range(0, size + 1, 1000):
            file_progress(done)
        file_progress.done(size)  # bytes not reported on the way are added at the end
        return size

    sizes = [10_500, 0, 3_000, 999] * 25
    assert run_batch(sizes, one, parallel=4) == sizes
    assert (counter.files, counter.bytes) == (len(sizes), sum(sizes))
    assert reports[-1] == (len(sizes), sum(sizes))
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(reports, reports[1:]))


def test_a_failure_stops_the_batch() -> None:
    started: List[int] = []

    def one(i: int) -> int:
        started.append(i)
        if i == 3:
            raise ValueError("file 3 failed")
        return i

    with pytest.raises(ValueError, match="file 3 failed"):
        run_batch(list(range(200)), one, parallel=1)
    assert started == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="file 3 failed"):
        run_batch(list(range(2000)), one, parallel=4)
