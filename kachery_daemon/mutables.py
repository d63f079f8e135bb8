"""Mutables: a small JSON key-value store kept by the node, in SQLite.

Keys and values are any JSON; a key is stored as its compact, key-sorted JSON text so
that `{"a": 1, "b": 2}` and `{"b": 2, "a": 1}` are the same key. The file lives in the
storage directory (`kachery-mutables.db`) and survives restarts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Tuple

FILE_NAME = "kachery-mutables.db"


def canonical_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class MutableStore:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS mutables (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )

    def get(self, key: Any) -> Tuple[bool, Any]:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM mutables WHERE key = ?", (canonical_json(key),)
            ).fetchone()
        return (False, None) if row is None else (True, json.loads(row[0]))

    def set(self, key: Any, value: Any, update: bool = True) -> bool:
        """Store `value`; with `update=False` an existing value is kept and False returned."""
        verb = "INSERT OR REPLACE" if update else "INSERT OR IGNORE"
        with self._lock:
            cursor = self._db.execute(
                f"{verb} INTO mutables (key, value) VALUES (?, ?)",
                (canonical_json(key), json.dumps(value)),
            )
        return cursor.rowcount > 0

    def delete(self, key: Any) -> bool:
        with self._lock:
            self._db.execute("DELETE FROM mutables WHERE key = ?", (canonical_json(key),))
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()
