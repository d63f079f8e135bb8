"""What the node did lately, for its web pages: a bounded ring of events, newest first,
and per-channel totals since the node started.

Kept in memory only (a restart starts empty); the ring holds `CAPACITY` events, so a busy
node costs the same memory as an idle one. Appending is a deque append: the request paths
that record (store, load, channel transfers, refusals) pay nothing measurable.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional

CAPACITY = 500
STORE, LINK, LOAD, CHANNEL_DOWNLOAD, CHANNEL_UPLOAD, REFUSED, ERROR = (
    "store",
    "link",
    "load",
    "channel download",
    "channel upload",
    "refused",
    "error",
)
PROBLEMS = (REFUSED, ERROR)


@dataclass(frozen=True)
class Event:
    time: float
    kind: str
    subject: str
    """A URI, an operation, a channel: what the event was about."""
    size: Optional[int] = None
    detail: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {
            "time": self.time,
            "kind": self.kind,
            "subject": self.subject,
            "size": self.size,
            "detail": self.detail,
        }


@dataclass
class ChannelTotals:
    uploads: int = 0
    uploaded_bytes: int = 0
    last_upload: Optional[float] = None
    downloads: int = 0
    downloaded_bytes: int = 0
    last_download: Optional[float] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "uploads": self.uploads,
            "uploadedBytes": self.uploaded_bytes,
            "lastUpload": self.last_upload,
            "downloads": self.downloads,
            "downloadedBytes": self.downloaded_bytes,
            "lastDownload": self.last_download,
        }


@dataclass
class ActivityLog:
    capacity: int = CAPACITY
    channels: Dict[str, ChannelTotals] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._events: Deque[Event] = deque(maxlen=self.capacity)

    def add(self, kind: str, subject: str, size: Optional[int] = None, detail: str = "") -> None:
        self._events.append(Event(time.time(), kind, subject, size, detail))

    def channel_transfer(self, channel: str, upload: bool, subject: str, size: int) -> None:
        totals = self.channels.setdefault(channel, ChannelTotals())
        now = time.time()
        if upload:
            totals.uploads += 1
            totals.uploaded_bytes += size
            totals.last_upload = now
        else:
            totals.downloads += 1
            totals.downloaded_bytes += size
            totals.last_download = now
        self.add(CHANNEL_UPLOAD if upload else CHANNEL_DOWNLOAD, subject, size, channel)

    def recent(self, limit: int = CAPACITY, kinds: Optional[tuple] = None) -> List[Event]:
        """The last `limit` events (of `kinds`, all when None), newest first."""
        found: List[Event] = []
        for event in reversed(self._events):
            if kinds is None or event.kind in kinds:
                found.append(event)
                if len(found) >= limit:
                    break
        return found
