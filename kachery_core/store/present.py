"""A load hit: an object already in a storage directory, found and its use recorded.

`LocalStorage.find` starts here, and so does the command line's fast `load-file`
(`kachery_client.hit`), which has no use for the rest of the store: neither imports
hashing, staging or link records to answer "is it here?".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Optional

from kachery_core.store.layout import StorageLayout
from kachery_core.store.origins import DEFAULT_GRACE_PERIOD, IndexedStorage


class PresentObjects(IndexedStorage):
    """The objects of one storage directory and its index: the read side of a hit."""

    def __init__(
        self,
        root: Path,
        fsync: bool = False,
        max_cache_size: Optional[int] = None,
        grace_period: float = DEFAULT_GRACE_PERIOD,
    ) -> None:
        self.layout = StorageLayout(Path(root))
        self.root = self.layout.root
        self.fsync = fsync
        self._init_bookkeeping(max_cache_size, grace_period)

    def find_present(self, sha1: str) -> Optional[Path]:
        """The object's own file, its use recorded in the index; None when it is not one
        (absent, a link record, or a symlink or anything else in its place)."""
        path = self.layout.object_path(sha1)
        if not is_regular(path):
            return None
        self._note_use(sha1)
        return path


def is_regular(path: Path) -> bool:
    """A regular file itself at `path` (not followed through a symlink)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
