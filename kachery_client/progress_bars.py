"""`progress=` of the Python API: a callback, or True for a bar drawn by tqdm.

A bar is drawn only where someone watches: on a terminal (stderr is a tty) or in a
Jupyter kernel, where tqdm draws a notebook widget. Elsewhere (a script's log, a batch job)
`progress=True` draws nothing, and without `progress=` nothing is ever drawn. tqdm is
imported only when a bar is drawn, so `import kachery_client` stays light.

Why tqdm and not the CLI's own bar (kachery_core.progress): it is the bar Python users
already know, it is maintained, and it draws in notebooks too, which the CLI never needs.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union

from kachery_core.progress import Progress

if TYPE_CHECKING:
    from kachery_core.backend.batch import BatchReport

ShowProgress = Union[bool, Callable[[int], None], None]
"""True for a bar, or a callback given the bytes done so far; None or False for neither."""

ShowTreeProgress = Union[bool, Callable[[int, int], None], None]
"""True for a bar, or a callback given (files done, bytes done); None or False for neither."""


def can_draw() -> bool:
    """Whether a bar would be seen: stderr is a terminal, or this is a Jupyter kernel."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except ValueError:  # a closed stderr
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _LazyBar:
    """A tqdm bar made at the first report: an operation with nothing to do (a load
    already on this machine) draws nothing. Reports may come from several threads."""

    def __init__(self, label: str, total: Optional[int]) -> None:
        self.label, self.total = label, total
        self.lock = threading.Lock()
        self._bar: Any = None
        self._shown = 0

    def show(self, done: int, postfix: Optional[str] = None) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                desc=self.label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                dynamic_ncols=True,
            )
        if postfix is not None:
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(max(done - self._shown, 0))
        self._shown = max(done, self._shown)

    def close(self) -> None:
        with self.lock:
            if self._bar is not None:
                self._bar.close()

    def __enter__(self) -> _LazyBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bar_for(progress: Any, label: str, total: Optional[int]) -> Optional[_LazyBar]:
    """A bar for `progress=True` where someone would see it; None otherwise."""
    return _LazyBar(label, total) if progress is True and can_draw() else None


def _callback_of(progress: Any) -> Any:
    """What to pass down when no bar is drawn: the caller's own callback, or None."""
    return None if progress is None or isinstance(progress, bool) else progress


@contextmanager
def byte_progress(
    progress: ShowProgress, label: str, total: Optional[int]
) -> Iterator[Optional[Progress]]:
    """The callback to pass down for `progress=`: the caller's own, a bar's, or None."""
    bar = _bar_for(progress, label, total)
    if bar is None:
        yield _callback_of(progress)
        return

    def report(done: int) -> None:
        with bar.lock:
            bar.show(done)

    with bar:
        yield report


@contextmanager
def tree_progress(
    progress: ShowTreeProgress, label: str, files: Optional[int], total: Optional[int]
) -> Iterator[Optional[BatchReport]]:
    """Like `byte_progress`, for a batch or folder: the bar counts bytes and shows files."""
    bar = _bar_for(progress, label, total)
    if bar is None:
        yield _callback_of(progress)
        return
    of = f"/{files}" if files is not None else ""

    def report(files_done: int, done: int = 0) -> None:
        with bar.lock:
            bar.show(done, f"{files_done}{of} files")

    with bar:
        yield report
