"""Files holding secrets should be readable by their owner only, as ssh insists for its keys.

Anyone who can read a token file (or a config file with `auth_token` in it) can act as
its owner towards the node; anyone who can read a node key can sign as the node. Unlike
ssh, kachery does not refuse such a file, which would break a working setup on the
spot: it warns, in one line on stderr naming the file and the fix (`chmod 600 FILE`),
once per file per process, however often the file is read.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from pathlib import Path
from typing import Optional, Set, TextIO

_checked: Set[str] = set()
_lock = threading.Lock()


def exposure(path: Path) -> Optional[str]:
    """Who besides the owner may read `path` ("its group", "others", both), or None."""
    if os.name != "posix":
        return None  # no mode bits to speak of
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None  # the reader reports a missing or unreadable file itself
    readers = [who for who, bit in (("its group", 0o040), ("others", 0o004)) if mode & bit]
    if not readers:
        return None
    return f"{' and '.join(readers)} (mode {mode:04o})"


def warn_if_exposed(path: Path, what: str, secret: str, stream: Optional[TextIO] = None) -> bool:
    """Warn once per process when `path`, a `what` ("token file") holding `secret` ("the
    access token"), is readable by group or others; True when this call warned."""
    key = os.path.abspath(path)
    with _lock:
        if key in _checked:
            return False
        _checked.add(key)
    who = exposure(path)
    if who is None:
        return False
    print(
        f"Warning: {what} {key} is readable by {who}, who may then use {secret} in it; "
        f"chmod 600 {key}",
        file=stream or sys.stderr,
        flush=True,
    )
    return True
