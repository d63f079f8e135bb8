"""Free loopback ports for the servers tests start, one range per pytest-xdist worker.

Why not `bind(0)` and close: that takes a port from the kernel's ephemeral range and gives
it back at once; until the test's server binds it, the next `bind(0)` anywhere (another
worker's, or any outgoing connection's) may get the same port, and a test would then talk
to another test's node. Each worker takes ports from its own slice below the ephemeral
range, which the kernel never hands out by itself, and checks that each one is free. A run
without xdist is worker 0. Two runs at once (scripts/test.sh runs each Python's suite beside
the other) would share slices; `KACHERY_TEST_FIRST_SLICE=K` moves a run's workers up by K
slices, so each run's worker N takes slice K + N.
"""

from __future__ import annotations

import os
import random
import socket
from typing import List

FIRST = 20000
SLICE = 600
"""Ports per worker: a test run uses each port only briefly, the cursor moves on."""


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # set by xdist in each worker
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def _first_slice() -> int:
    value = os.environ.get("KACHERY_TEST_FIRST_SLICE", "0")
    return int(value) if value.isdigit() else 0


def _slice() -> range:
    slices = max(1, (_ephemeral_low() - FIRST) // SLICE)
    start = FIRST + ((_first_slice() + _worker_index()) % slices) * SLICE
    return range(start, start + SLICE)


_ports = _slice()
_cursor = random.randrange(len(_ports))  # two runs side by side start at different places


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int = 1) -> List[int]:
    """`n` ports free now on 127.0.0.1, none handed out again for a while."""
    global _cursor
    found: List[int] = []
    for _ in range(len(_ports)):
        port = _ports[_cursor]
        _cursor = (_cursor + 1) % len(_ports)
        if _is_free(port):
            found.append(port)
            if len(found) == n:
                return found
    raise AssertionError(f"no {n} free ports in {_ports.start}-{_ports.stop - 1}")
