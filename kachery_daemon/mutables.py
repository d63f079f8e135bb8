"""Mutables: a small JSON key-value store kept by the node, in SQLite.

Keys and values are any JSON; a key is stored as its compact, key-sorted JSON text so
that `{"a": 1, "b": 2}` and `{"b": 2, "a": 1}` are the same key. The file lives in the
storage directory (`kachery-mutables.db`) and survives restarts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Tuple

from .sqlite_db import SqliteDb

FILE_NAME = "kachery-mutables.db"
SCHEMA = "CREATE TABLE IF NOT EXISTS mutables (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def canonical_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class MutableStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteDb(path, [SCHEMA])

    def get(self, key: Any) -> Tuple[bool, Any]:
        with self._db.locked() as db:
            row = db.execute(
                "SELECT value FROM mutables WHERE key = ?", (canonical_json(key),)
            ).fetchone()
        return (False, None) if row is None else (True, json.loads(row[0]))

    def set(self, key: Any, value: Any, update: bool = True) -> bool:
        """Store `value`; with `update=False` an existing value is kept and False returned."""
        verb = "INSERT OR REPLACE" if update else "INSERT OR IGNORE"
        with self._db.locked() as db:
            cursor = db.execute(
                f"{verb} INTO mutables (key, value) VALUES (?, ?)",
                (canonical_json(key), json.dumps(value)),
            )
        return cursor.rowcount > 0

    def delete(self, key: Any) -> bool:
        with self._db.locked() as db:
            db.execute("DELETE FROM mutables WHERE key = ?", (canonical_json(key),))
        return True

    def close(self) -> None:
        self._db.close()
