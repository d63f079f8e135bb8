"""The index of origins and recency: which objects are pinned, which are cached, when each
was last used. One SQLite file per storage directory, `<dir>/kachery-index.sqlite`, shared
by the node and the embedded backend (WAL mode, short transactions, so several processes
write it at once).

- *pinned*: stored or linked here, or pinned by hand; removed only by a command naming it.
- *cached*: fetched from a node, a channel, or piece by piece; gc may evict it.

An object on disk without a row has an unknown origin (stored before the index, or by the
original kachery-client) and counts as pinned. A missing, half-built or damaged index is
rebuilt from a walk of `sha1/` with everything pinned; nothing is removed by a rebuild.

Ordering is what keeps pins safe: every write records its row *before* the object is
renamed into place, and eviction removes an object and its row inside one write
transaction (SQLite serializes those), so a store of an object that gc is evicting either
marks it pinned first (gc then skips it) or finds it gone and writes it again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from kachery_core.content.uri import is_sha1
from kachery_core.errors import KacheryError

INDEX_FILE = "kachery-index.sqlite"
PINNED = "pinned"
CACHED = "cached"
TOUCH_INTERVAL = 60.0
"""A load hit updates an object's last use at most this often (seconds)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    sha1 TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    is_link INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    last_used REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS by_origin_recency ON objects (origin, is_link, last_used, size);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS totals (
    origin TEXT NOT NULL, is_link INTEGER NOT NULL, count INTEGER NOT NULL,
    bytes INTEGER NOT NULL, PRIMARY KEY (origin, is_link)
);
CREATE TRIGGER IF NOT EXISTS count_insert AFTER INSERT ON objects BEGIN
    UPDATE totals SET count = count + 1, bytes = bytes + NEW.size
        WHERE origin = NEW.origin AND is_link = NEW.is_link;
END;
CREATE TRIGGER IF NOT EXISTS count_delete AFTER DELETE ON objects BEGIN
    UPDATE totals SET count = count - 1, bytes = bytes - OLD.size
        WHERE origin = OLD.origin AND is_link = OLD.is_link;
END;
CREATE TRIGGER IF NOT EXISTS count_update AFTER UPDATE OF origin, is_link, size ON objects BEGIN
    UPDATE totals SET count = count - 1, bytes = bytes - OLD.size
        WHERE origin = OLD.origin AND is_link = OLD.is_link;
    UPDATE totals SET count = count + 1, bytes = bytes + NEW.size
        WHERE origin = NEW.origin AND is_link = NEW.is_link;
END;
"""


def _statements(script: str) -> List[str]:
    """The schema, one statement each (`executescript` would commit mid-transaction)."""
    out: List[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    return out


_STATEMENTS = _statements(_SCHEMA)


class IndexUnavailable(KacheryError):
    """The index cannot be opened for writing here (a read-only store): no bookkeeping."""

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(
            message,
            hint or "run this as a user who may write the storage directory (or its group)",
        )


class StoreIndex:
    """The index of one storage directory. Every method is one short transaction."""

    def __init__(self, root: Path, fsync: bool = False, shared_mode: Optional[int] = None) -> None:
        self.root = Path(root)
        self.path = self.root / INDEX_FILE
        self.fsync = fsync
        self.shared_mode = shared_mode
        """File mode for the index files of a group-shared store (None: the umask's)."""
        self._local = threading.local()
        self._touched: Dict[str, float] = {}
        self._touch_guard = threading.Lock()
        self._writing = threading.Lock()
        """Threads of this process take turns at `record`: two connections writing at once
        make SQLite's busy handler sleep (a millisecond and up) instead of waiting."""

    # -- connection ----------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        """This thread's connection, opening (and if need be building) the index."""
        conn: Optional[sqlite3.Connection] = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = self._open()
        except sqlite3.OperationalError:
            raise  # busy, locked, unreadable: not damage; the file stays
        except sqlite3.DatabaseError:  # not a database, or a malformed one
            self._set_aside_damaged()
            conn = self._open()
        self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        if not self.root.is_dir():
            raise IndexUnavailable(
                f"no storage directory at {self.root}",
                "nothing was stored there yet; check KACHERY_STORAGE_DIR (or --storage-dir)",
            )
        existed = self.path.exists()
        try:
            conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise IndexUnavailable(f"cannot open {self.path}: {exc}") from None
        try:
            if not existed:  # private unless the store is a group's (-wal, -shm follow it)
                os.chmod(self.path, self.shared_mode if self.shared_mode is not None else 0o600)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
            if not self._complete(conn):
                self._build(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            if "readonly" in str(exc) or "unable to open" in str(exc):
                raise IndexUnavailable(f"cannot write {self.path}: {exc}") from None
            raise
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @staticmethod
    def _complete(conn: sqlite3.Connection) -> bool:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'complete'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return False
            raise
        return row is not None and row[0] == "1"

    def _build(self, conn: sqlite3.Connection) -> None:
        """Walk `sha1/` and record every object and link as pinned, in one transaction
        (a builder killed half-way leaves no `complete` mark, so the next one starts over)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _STATEMENTS:
                conn.execute(statement)
            if not self._complete(conn):  # another process may have built it meanwhile
                now = time.time()
                conn.execute("DELETE FROM objects")
                conn.execute("DELETE FROM totals")
                conn.executemany(
                    "INSERT INTO totals VALUES (?, ?, 0, 0)",
                    [(PINNED, 0), (PINNED, 1), (CACHED, 0), (CACHED, 1)],
                )
                found: Dict[str, Tuple[bool, int]] = {}
                for sha1, link, size in walk(self.root):
                    if not link or sha1 not in found:  # a real copy wins over a link record
                        found[sha1] = (link, size)
                conn.executemany(
                    "INSERT INTO objects VALUES (?, ?, ?, ?, ?)",
                    ((sha1, PINNED, int(link), size, now) for sha1, (link, size) in found.items()),
                )
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('complete', '1')")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _set_aside_damaged(self) -> None:
        """A damaged index is moved aside (kept for inspection); the next open rebuilds."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(self.path) + suffix)
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, f"{path}.damaged-{stamp}-{os.getpid()}")

    # -- writes --------------------------------------------------------------------

    def record(
        self, sha1: str, size: int, origin: str, exists: bool, is_link: bool = False
    ) -> None:
        """Record a write about to be placed. Pinned wins over cached; a cached write of an
        object already on disk without a row keeps it pinned (its origin is unknown)."""
        with self._writing:
            self._record(sha1, size, origin, exists, is_link)

    def _record(self, sha1: str, size: int, origin: str, exists: bool, is_link: bool) -> None:
        now = time.time()
        if origin == CACHED and exists:
            self.db().execute(
                "INSERT INTO objects VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(sha1) DO UPDATE SET last_used = excluded.last_used",
                (sha1, PINNED, int(is_link), size, now),
            )
            return
        self.db().execute(
            "INSERT INTO objects VALUES (?, ?, ?, ?, ?) ON CONFLICT(sha1) DO UPDATE SET "
            "origin = CASE WHEN excluded.origin = 'pinned' THEN 'pinned' ELSE objects.origin END, "
            "is_link = excluded.is_link, size = excluded.size, last_used = excluded.last_used",
            (sha1, origin, int(is_link), size, now),
        )

    def touch(self, sha1: str) -> None:
        """A load hit: remember the use, at most once a `TOUCH_INTERVAL` per object."""
        now = time.time()
        with self._touch_guard:
            if now - self._touched.get(sha1, 0.0) < TOUCH_INTERVAL:
                return
            if len(self._touched) > 100_000:
                self._touched.clear()
            self._touched[sha1] = now
        self.db().execute(
            "UPDATE objects SET last_used = ? WHERE sha1 = ? AND last_used < ?",
            (now, sha1, now - TOUCH_INTERVAL),
        )

    def set_origin(self, sha1s: Iterable[str], origin: str) -> int:
        """Pin or unpin objects by hash; returns how many rows changed."""
        conn = self.db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            changed = 0
            for sha1 in sha1s:
                changed += conn.execute(
                    "UPDATE objects SET origin = ? WHERE sha1 = ? AND is_link = 0",
                    (origin, sha1),
                ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return changed

    def add_unknown(self, sha1: str, size: int, is_link: bool = False) -> None:
        """An object on disk without a row (written by an older client): pinned."""
        self.db().execute(
            "INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?, ?)",
            (sha1, PINNED, int(is_link), size, time.time()),
        )

    def forget(self, sha1s: Iterable[str]) -> None:
        self.db().executemany("DELETE FROM objects WHERE sha1 = ?", ((s,) for s in sha1s))

    # -- reads ---------------------------------------------------------------------

    def row(self, sha1: str) -> Optional[Tuple[str, int, int, float]]:
        """(origin, is_link, size, last_used) of an object, or None if it has no row."""
        found = (
            self.db()
            .execute("SELECT origin, is_link, size, last_used FROM objects WHERE sha1 = ?", (sha1,))
            .fetchone()
        )
        return None if found is None else (found[0], found[1], found[2], found[3])

    def totals(self) -> Dict[str, Tuple[int, int]]:
        """{"pinned"|"cached"|"links": (count, bytes)} from the index (no walk)."""
        out = {PINNED: (0, 0), CACHED: (0, 0), "links": (0, 0)}
        for origin, is_link, count, size in self.db().execute(
            "SELECT origin, is_link, count, bytes FROM totals"
        ):
            key = "links" if is_link else origin
            before = out.get(key, (0, 0))
            out[key] = (before[0] + count, before[1] + size)
        return out

    def cached_bytes(self) -> int:
        return self.totals()[CACHED][1]

    def oldest_cached(self, used_before: float, limit: int) -> List[Tuple[str, int]]:
        return [
            (sha1, size)
            for sha1, size in self.db().execute(
                "SELECT sha1, size FROM objects WHERE origin = 'cached' AND is_link = 0 "
                "AND last_used < ? ORDER BY last_used LIMIT ?",
                (used_before, limit),
            )
        ]

    def links(self) -> List[str]:
        return [sha1 for (sha1,) in self.db().execute("SELECT sha1 FROM objects WHERE is_link = 1")]


def walk(root: Path) -> Iterable[Tuple[str, bool, int]]:
    """(sha1, is_link, size) of every object and link record under `<root>/sha1/`."""
    top = Path(root) / "sha1"
    for level1 in _dirs(top):
        for level2 in _dirs(level1):
            for level3 in _dirs(level2):
                try:
                    entries = list(os.scandir(level3))
                except OSError:
                    continue
                for entry in entries:
                    name = entry.name
                    is_link = name.endswith(".link")
                    sha1 = name[:-5] if is_link else name
                    if not is_sha1(sha1) or sha1 != sha1.lower():
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        yield sha1, is_link, 0 if is_link else st.st_size


def _dirs(path: Path) -> List[Path]:
    try:
        return [Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
