"""Where the suite's CPU goes: per test file, the CPU-seconds of the test process and of
the processes it started and waited for (nodes, CLIs, weed), and the wall time.

Off unless `KACHERY_TEST_CPU_LOG=DIR` is set: then each pytest process (each xdist worker)
writes `DIR/<worker>-py<X.Y>.json` at session end (scripts/test.sh's two runs share DIR), and `python tests/cpu_accounting.py DIR` prints
the files, heaviest first. Why per file: a module fixture's node is stopped in the last
test's teardown, so per test its CPU lands on whichever test came last; per file it adds up.
A child's CPU is counted when it is waited for (`RUSAGE_CHILDREN`), so a process left to
the session's safety net counts at session end, under "(session end)".
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

LOG_DIR = os.environ.get("KACHERY_TEST_CPU_LOG")
_totals: Dict[str, List[float]] = {}
"""file -> [own CPU s, children's CPU s, wall s, tests]"""


def _cpu() -> List[float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return [me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime, time.monotonic()]


def _add(key: str, before: List[float], tests: int) -> None:
    after = _cpu()
    row = _totals.setdefault(key, [0.0, 0.0, 0.0, 0])
    for i in range(3):
        row[i] += after[i] - before[i]
    row[3] += tests


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    if LOG_DIR is None:
        yield
        return
    before = _cpu()
    yield
    _add(item.nodeid.split("::")[0], before, 1)


_start: Optional[List[float]] = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _start
    _start = _cpu()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if LOG_DIR is None or _start is None:
        return
    done = [sum(row[i] for row in _totals.values()) for i in range(3)]
    rest = [_start[i] + done[i] for i in range(3)]  # what the files did not account for
    _add("(session end)", rest, 0)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    Path(LOG_DIR).mkdir(parents=True, exist_ok=True)
    (Path(LOG_DIR) / f"{worker}-py{version}.json").write_text(json.dumps(_totals))


def report(log_dir: Path, pattern: str = "*.json") -> str:
    """The table of all workers' files, heaviest CPU first, with the totals."""
    rows: Dict[str, List[float]] = {}
    for path in sorted(log_dir.glob(pattern)):
        for name, row in json.loads(path.read_text()).items():
            total = rows.setdefault(name, [0.0, 0.0, 0.0, 0])
            for i in range(4):
                total[i] += row[i]
    lines = [f"{'CPU s':>7} {'own':>7} {'child':>7} {'wall s':>7} {'tests':>5}  file"]
    order = sorted(rows.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    for name, (own, kids, wall, tests) in order:
        lines.append(f"{own + kids:7.1f} {own:7.1f} {kids:7.1f} {wall:7.1f} {tests:5d}  {name}")
    own, kids, wall, tests = (sum(r[i] for r in rows.values()) for i in range(4))
    lines.append(f"{own + kids:7.1f} {own:7.1f} {kids:7.1f} {wall:7.1f} {tests:5d}  (all)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1]), *sys.argv[2:3]))  # e.g. DIR '*-py3.8.json'
