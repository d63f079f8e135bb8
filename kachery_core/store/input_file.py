"""Reading a file someone named for a store or a link: one-line refusals, and the check
that it did not change while it was read.

The check is made on the open descriptor before anything is kept (`LocalStorage` calls
`check_unchanged` before it renames a staging file into place or writes a link record),
so a file that grew, shrank or was rewritten while read leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Tuple

from kachery_core.errors import IntegrityError, InvalidInputError


def check_regular_file(st: os.stat_result, shown: str) -> None:
    """Refuse anything but a regular file as the input of a store or link, in one line."""
    if stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(
            f"{shown!r} is a directory, not a file",
            "store the files in it one by one, or pack it with tar first",
        )
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{shown!r} is not a regular file", "give a regular file")


class open_input_file:
    """Open a user-named file for reading, turning OS errors into one-line messages."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> Tuple[io.FileIO, os.stat_result]:
        shown = str(self.path)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise InvalidInputError(f"no such file: {shown!r}", "check the path") from None
        except PermissionError:
            raise InvalidInputError(
                f"permission denied: {shown!r}", "check its permissions"
            ) from None
        check_regular_file(st, shown)
        try:
            self.file = io.FileIO(self.path, "rb")
        except PermissionError:
            raise InvalidInputError(
                f"permission denied reading {shown!r}", "check the file's permissions"
            ) from None
        return self.file, st

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def check_unchanged(fd: int, before: os.stat_result, size_read: int, shown: str) -> None:
    """Refuse bytes read from `fd` unless the file still has the size and mtime it had when
    opened, and that many bytes were read (a /proc file says 0 and then yields some)."""
    after = os.fstat(fd)
    if (
        size_read != before.st_size
        or after.st_size != before.st_size
        or after.st_mtime != before.st_mtime
    ):
        raise IntegrityError(
            f"{shown!r} changed while it was being read",
            "wait until whatever writes it is done, then try again; nothing was kept",
        )


def read_small(source: io.FileIO, size: int) -> bytes:
    """All of a file expected to be `size` bytes, with at most one byte more (so a file that
    grew shows up as the wrong size)."""
    data = source.read(size + 1)
    if data is None or len(data) == size + 1 or not data:
        return data or b""
    pieces = [data]  # a short read: keep going until the end or one byte too many
    got = len(data)
    while got <= size:
        piece = source.read(size + 1 - got)
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)
