"""What a local file is, in words: shared by the folder walk and the `--dest` copy, which
both refuse what is not a regular file and say what they found instead."""

from __future__ import annotations

import stat


def file_kind(mode: int) -> str:
    """What a stat mode says the file is, in words for an error message."""
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"
