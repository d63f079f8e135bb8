"""`LinkRecord`: the JSON beside an object's path that stands in for a linked file.

Kept apart from `local.py` (which re-exports it) so the record's format lives in one small
module; `LocalStorage.link_open_file` writes it and `LocalStorage.find` reads it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Optional, TypeVar

from kachery_core.records import dataclass

T = TypeVar("T")


@dataclass(frozen=True)
class LinkRecord:
    """The JSON beside an object's path that stands in for a linked file.

    `stat` holds size and mtime (the original protocol) and, since records written by
    this version, the inode, device and ctime: an edit whose size and mtime were put
    back (`os.utime`) still changes the ctime, and a file replaced by another has a new
    inode. Records without them are still read and checked on size and mtime alone.
    """

    path: str
    size: int
    mtime: float
    manifest_hash: Optional[str] = None
    ino: Optional[int] = None
    dev: Optional[int] = None
    ctime: Optional[float] = None

    @classmethod
    def for_file(cls, path: str, st: os.stat_result, manifest_hash: Optional[str]) -> LinkRecord:
        return cls(path, st.st_size, st.st_mtime, manifest_hash, st.st_ino, st.st_dev, st.st_ctime)

    def to_bytes(self) -> bytes:
        st: Dict[str, object] = {"size": self.size, "mtime": self.mtime}
        for key in ("ino", "dev", "ctime"):
            value = getattr(self, key)
            if value is not None:
                st[key] = value
        doc = {"path": self.path, "manifest_hash": self.manifest_hash, "stat": st}
        return json.dumps(doc).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LinkRecord:
        doc = json.loads(data)
        st = doc["stat"]
        return cls(
            str(doc["path"]),
            int(st["size"]),
            float(st["mtime"]),
            doc.get("manifest_hash"),
            _optional(int, st.get("ino")),
            _optional(int, st.get("dev")),
            _optional(float, st.get("ctime")),
        )

    def mismatch(self, st: os.stat_result) -> Optional[str]:
        """What differs between the record and the file's stat now, or None if nothing."""
        checks = (
            ("size", self.size, st.st_size),
            ("mtime", self.mtime, st.st_mtime),
            ("inode", self.ino, st.st_ino),
            ("device", self.dev, st.st_dev),
            ("ctime", self.ctime, st.st_ctime),
        )
        for name, recorded, now in checks:
            if recorded is not None and recorded != now:
                return f"{name} {now}, recorded {recorded}"
        return None

    def matches(self, st: os.stat_result) -> bool:
        return self.mismatch(st) is None


def _optional(parse: Callable[[Any], T], value: Any) -> Optional[T]:
    return None if value is None else parse(value)
