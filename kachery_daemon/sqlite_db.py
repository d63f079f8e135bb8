"""One SQLite file of the node (feeds, mutables): connection, journal mode, schema, lock.

The node's request threads share one connection, so every use holds the lock: sqlite3
connections must not be used by two threads at once. Autocommit (`isolation_level=None`)
makes each statement its own transaction unless `transaction()` groups several. WAL lets
a reader (a watch) proceed while a writer appends.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Iterator, Sequence


class SqliteDb:
    def __init__(self, path: Path, schema: Sequence[str]) -> None:
        """Open (or create) the database at `path` and run the `CREATE ... IF NOT EXISTS`
        statements of `schema`."""
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            for statement in schema:
                self._conn.execute(statement)

    @contextlib.contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, for this thread alone; each statement commits by itself."""
        with self._lock:
            yield self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection, for this thread alone, inside one transaction: all or nothing."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
