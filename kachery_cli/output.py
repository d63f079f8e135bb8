"""Writing object bytes to stdout as fast as the kernel allows, checked on the way."""

from __future__ import annotations

import os
import shutil
from typing import BinaryIO

from kachery_client.verified_read import VerifiedRead
from kachery_core.content.hashing import writer_for
from kachery_core.store.base import FileRange


def copy_to_fd(stream: BinaryIO, out_fd: int) -> None:
    """Copy a stream to a file descriptor.

    A `VerifiedRead` (what `Client.open` gives) copies itself, hashing beside the copy; an
    unchecked local file goes through `os.sendfile`; anything else through a loop.
    """
    if isinstance(stream, VerifiedRead):
        with os.fdopen(os.dup(out_fd), "wb", buffering=0) as out:
            stream.copy_to(writer_for(out))
        return
    if isinstance(stream, FileRange) and hasattr(os, "sendfile"):
        offset, remaining = stream.offset, stream.length
        try:
            while remaining > 0:
                sent = os.sendfile(out_fd, stream.fileno(), offset, min(remaining, 1 << 30))
                if sent == 0:
                    break
                offset += sent
                remaining -= sent
            return
        except OSError as exc:
            if offset != stream.offset or exc.errno not in (22, 38, 95):  # EINVAL/ENOSYS/EOPNOTSUPP
                raise
            # e.g. stdout is a terminal: fall back to the plain loop below.
    with os.fdopen(os.dup(out_fd), "wb", buffering=0) as out:
        shutil.copyfileobj(stream, out, 1 << 20)
