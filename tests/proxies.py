"""Starting the tests' hostile proxies (`mitm_proxy.py`, `batch_proxy.py`) as subprocesses.

A proxy script prints its loopback port on its first line; every proxy a test started is
killed when the test ends, whatever its outcome.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, List


@contextmanager
def proxy_launcher(script: str) -> Iterator[Callable[..., int]]:
    """Yields `start(*args) -> port`, running `python script *args` for each call."""
    started: List[subprocess.Popen] = []

    def start(*args: object) -> int:
        proc = subprocess.Popen(
            [sys.executable, script, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"proxy did not start (exit {proc.poll()})"
        return int(line)

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
