"""The end of a command whose reader went away (`kachery-client cat-file URI | head`).

Both the fast `load-file` hit (`entry`) and the full command (`main`) end this way, and
neither may import the other's machinery for it, so it lives on its own.
"""

from __future__ import annotations

import os
import sys


def reader_gone() -> None:
    """Not an error: exit 0, with later writes (the flush at exit) going nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)
