"""Replace a small file (a key, a token list, a config, a cache) all at once.

Readers see the old file or the new one, never half of one: the bytes go to a staging
file beside the target (same directory, so the same filesystem and an atomic rename),
which gets its final mode and group *before* the rename, so the file never shows up with
looser permissions. The staging name is unique per call (pid and random), created with
O_EXCL, so two writers of the same file never share a staging file; on any failure it is
removed and the old file stays as it was.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Optional

STAGING_SUFFIX = ".tmp"


def staging_path(path: Path) -> Path:
    """A fresh staging name beside `path`: hidden, and unique to this call."""
    return path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}{STAGING_SUFFIX}")


def write_atomically(
    path: Path,
    data: bytes,
    mode: Optional[int] = 0o644,
    group: Optional[int] = None,
    fsync: bool = False,
    check: Optional[Callable[[Path], object]] = None,
) -> None:
    """Write `data` to `path` by rename.

    `mode`: the file's permission bits, exactly (the umask does not apply); None for the
    usual 0o666 less the umask. `group`: a group ID to give it. `fsync`: flush to disk
    before the rename (survives a power cut). `check`: called with the staging file before
    the rename; raising keeps the old file (never replace a working config with a broken
    one).
    """
    path = Path(path)
    staging = staging_path(path)
    fd = os.open(
        staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666
    )
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if group is not None:
                os.fchown(fd, -1, group)
            if mode is not None:
                os.fchmod(fd, mode)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if check is not None:
            check(staging)
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        raise
