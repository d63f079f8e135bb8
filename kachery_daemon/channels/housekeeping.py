"""Housekeeping: what transfers leave behind when they are cut off, swept at node start and
then every SWEEP_SECONDS.

- `<temp_dir>/<sha1>.download` files (resumable channel downloads) untouched for
  DOWNLOAD_MAX_AGE are removed, unless a transfer holds their lock.
- Request objects (`<prefix>requests/<sha1>`) older than REQUEST_MAX_AGE are deleted by
  nodes that write requests or provide; a load that waits longer renews its request every
  REQUEST_RENEW_SECONDS, so a live request is never that old.
- Multipart uploads this node started (recorded in `<storage_dir>/channel-uploads.json` as
  boto3 creates them) and still open after UPLOAD_MAX_AGE are aborted; a failed upload
  aborts its own at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from kachery_core.atomic_file import write_atomically
from kachery_core.errors import KacheryError, NotFoundError
from kachery_core.store.local import LocalStorage
from kachery_core.store.resumable import SUFFIX as DOWNLOAD_SUFFIX

DOWNLOAD_MAX_AGE = 7 * 86400.0
REQUEST_MAX_AGE = 3600.0
REQUEST_RENEW_SECONDS = 600.0
UPLOAD_MAX_AGE = 86400.0
SWEEP_SECONDS = 3600.0
JOURNAL_NAME = "channel-uploads.json"


class UploadJournal:
    """The multipart uploads this node has started and not yet seen end, kept on disk so a
    node killed midway still aborts them at its next start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def entries(self) -> List[Dict[str, Any]]:
        with self._lock:
            return self._read()

    def add(self, bucket: str, key: str, upload_id: str) -> None:
        entry = {"bucket": bucket, "key": key, "uploadId": upload_id, "time": time.time()}
        with self._lock:
            self._write(self._read() + [entry])

    def remove(self, upload_id: str) -> None:
        with self._lock:
            self._write([e for e in self._read() if e.get("uploadId") != upload_id])

    def _read(self) -> List[Dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return [e for e in doc if isinstance(e, dict)] if isinstance(doc, list) else []

    def _write(self, entries: List[Dict[str, Any]]) -> None:
        write_atomically(self.path, json.dumps(entries).encode(), mode=0o600)


def sweep_downloads(storage: LocalStorage, now: float) -> int:
    """Remove `.download` files untouched for DOWNLOAD_MAX_AGE that no transfer holds."""
    removed = 0
    try:
        names = os.listdir(storage.temp_dir)
    except OSError:
        return 0
    for name in names:
        if not name.endswith(DOWNLOAD_SUFFIX):
            continue
        path = storage.temp_dir / name
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime < DOWNLOAD_MAX_AGE:
                continue
            with open(path, "rb") as f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a transfer is using it
                path.unlink()
                removed += 1
    return removed


def expire_requests(bucket: Any, now: float) -> int:
    """Delete request objects older than REQUEST_MAX_AGE; return how many."""
    removed = 0
    for key, _, modified in bucket.list_entries(bucket.requests_prefix):
        if now - modified >= REQUEST_MAX_AGE:
            with contextlib.suppress(NotFoundError):
                bucket.delete(key)
            removed += 1
    return removed


def abort_stale_uploads(bucket: Any, journal: UploadJournal, now: float) -> int:
    """Abort this node's multipart uploads into `bucket` open for UPLOAD_MAX_AGE or more."""
    aborted = 0
    for entry in journal.entries():
        if entry.get("bucket") != bucket.channel.bucket:
            continue
        if now - float(entry.get("time", now)) < UPLOAD_MAX_AGE:
            continue
        with contextlib.suppress(KacheryError):  # the next sweep tries again
            bucket.abort_upload(str(entry["key"]), str(entry["uploadId"]))
            journal.remove(str(entry["uploadId"]))
            aborted += 1
    return aborted
