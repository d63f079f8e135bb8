"""Progress: the callback type every long operation takes, and a bar on stderr for it.

The bar is shown only on a terminal and only for operations over a second. Both command
lines (`kachery-client`, `kachery-daemon`) use it, so it lives on the core's ground floor.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

Progress = Callable[[int], None]
"""Called with the number of bytes processed so far."""

SHOW_AFTER_SECONDS = 1.0
REDRAW_SECONDS = 0.1


class ProgressBar:
    """Call with bytes done so far; call `close()` at the end."""

    def __init__(self, label: str, total: Optional[int], stream: TextIO) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.started < SHOW_AFTER_SECONDS or now - self._last_draw < REDRAW_SECONDS:
            return
        self._last_draw = now
        self._drawn = True
        rate = done / max(now - self.started, 1e-6)
        self.stream.write(f"\r{self.label}: {self.text(done, rate)} ")
        self.stream.flush()

    def text(self, done: int, rate: float) -> str:
        """What the bar shows after its label."""
        text = human_size(done)
        if self.total:
            fraction = min(done / self.total, 1.0)
            filled = int(fraction * 30)
            bar = "#" * filled + "." * (30 - filled)
            text = f"[{bar}] {fraction:4.0%} {human_size(done)}/{human_size(self.total)}"
        return f"{text} {human_size(int(rate))}/s"

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def progress_bar(label: str, total: Optional[int] = None) -> Optional[ProgressBar]:
    """A bar when stderr is a terminal, else None (so scripts and logs stay clean)."""
    if not sys.stderr.isatty():
        return None
    return ProgressBar(label, total, sys.stderr)


class BatchProgressBar(ProgressBar):
    """A bar for a batch: call with (files done, bytes done)."""

    def __init__(
        self, label: str, files: Optional[int], total: Optional[int], stream: TextIO
    ) -> None:
        super().__init__(label, total, stream)
        self.files = files
        self._files_done = 0

    def __call__(self, files: int, done: int = 0) -> None:  # type: ignore[override]
        self._files_done = files
        super().__call__(done)

    def text(self, done: int, rate: float) -> str:
        count = (
            f"{self._files_done}/{self.files} files" if self.files else f"{self._files_done} files"
        )
        return f"{count}, {super().text(done, rate)}"


def batch_progress_bar(
    label: str, files: Optional[int] = None, total: Optional[int] = None
) -> Optional[BatchProgressBar]:
    """A files-and-bytes bar when stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    return BatchProgressBar(label, files, total, sys.stderr)


def as_callback(bar: Optional[ProgressBar]) -> Optional[Progress]:
    return bar


def human_size(n: int) -> str:
    """Bytes as people read them (`512 B`, `1.5 KiB`, `20.0 GiB`), for bars, `usage` and
    the node's pages alike."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
