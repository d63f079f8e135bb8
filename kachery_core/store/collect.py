"""Keeping a storage directory within bounds: usage, pin, unpin, drop and gc.

The one implementation behind `kachery-client usage|pin|unpin|drop|gc`, the same
`kachery-daemon` commands, a `Client`'s methods and the limit a store enforces on write.

- `collect` (gc) evicts cached objects, least recently used first, down to a size; an
  object used within the grace period is never evicted. It also removes abandoned
  staging files and link records whose file changed or vanished.
- One lock, `<dir>/kachery-gc.lock` (flock), lets one collection run at a time whatever
  process runs it; each eviction removes the row and the object in one SQLite write
  transaction, so a SIGKILL anywhere leaves at most rows of objects already gone, which
  the next collection forgets (loads look at the file, never the row).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Tuple

from kachery_core.content.directory import Directory
from kachery_core.content.uri import ContentUri, parse_any_uri
from kachery_core.errors import InvalidInputError, NotFoundError
from kachery_core.progress import human_size
from kachery_core.store.index import CACHED, PINNED
from kachery_core.store.link_record import LinkRecord
from kachery_core.store.staging import sweep_dead_staging_files, unlink_quietly

if TYPE_CHECKING:
    from kachery_core.store.local import LocalStorage

LOCK_FILE = "kachery-gc.lock"
BATCH = 500
"""Evictions per write transaction: short enough that stores are never held up long."""
ABANDONED_AFTER = 2 * 86400.0
"""Seconds after its last change that any other file in the temp dir counts as abandoned."""


@dataclass
class CollectReport:
    """What a gc did (or, dry, would do)."""

    evicted: int = 0
    evicted_bytes: int = 0
    cached_bytes: int = 0
    """Cached bytes left."""
    pinned_bytes: int = 0
    temp_files: int = 0
    stale_links: int = 0
    pinned_over_limit: bool = False
    dry_run: bool = False
    evicted_sha1s: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, object]:
        out = dict(self.__dict__)
        out.pop("evicted_sha1s")
        return out

    def line(self) -> str:
        verb = "would evict" if self.dry_run else "evicted"
        text = (
            f"{verb} {self.evicted} cached objects ({self.evicted_bytes} bytes); "
            f"{self.cached_bytes} cached bytes left, {self.pinned_bytes} pinned; "
            f"{'would remove' if self.dry_run else 'removed'} {self.temp_files} temporary files "
            f"and {self.stale_links} stale link records"
        )
        if self.pinned_over_limit:
            text += "; pinned objects alone are over the size asked for, and stay"
        return text


@contextlib.contextmanager
def gc_lock(root: Path, wait: bool = True, mode: Optional[int] = None) -> Iterator[bool]:
    """Hold the store's collection lock; yields False (without it) when `wait` is off and
    another process holds it."""
    path = Path(root) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 if mode else 0o600)
    try:
        if mode:
            with contextlib.suppress(OSError):
                os.fchmod(fd, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def collect(
    storage: LocalStorage,
    max_size: int = 0,
    dry_run: bool = False,
    wait: bool = True,
    grace_period: Optional[float] = None,
    housekeeping: bool = False,
) -> CollectReport:
    """Evict cached objects, least recently used first, until the objects (pinned and
    cached) take at most `max_size` bytes (pinned ones always stay); with
    `housekeeping`, also sweep temporary files and stale links."""
    index = storage.open_index()
    report = CollectReport(dry_run=dry_run)
    grace = storage.grace_period if grace_period is None else grace_period
    shared = storage.shared_group_mode & 0o666
    with gc_lock(storage.root, wait, shared or None) as locked:
        if not locked:
            return report
        totals = index.totals()
        cached, pinned = totals[CACHED][1], totals[PINNED][1]
        target = max(0, max_size - pinned)
        cutoff = time.time() - grace
        if dry_run:
            _plan(index, cached, target, cutoff, report)
            cached -= report.evicted_bytes
        else:
            cached = _evict(storage, cached, target, cutoff, report)
        report.cached_bytes = cached
        report.pinned_bytes = pinned
        report.pinned_over_limit = 0 < max_size < pinned
        if housekeeping:
            report.temp_files = sweep_temp_files(storage, dry_run)
            report.stale_links = prune_stale_links(storage, dry_run)
    return report


def _plan(index: object, cached: int, max_size: int, cutoff: float, report: CollectReport) -> None:
    rows = index.oldest_cached(cutoff, -1)  # type: ignore[attr-defined]
    for sha1, size in rows:
        if cached <= max_size:
            break
        cached -= size
        report.evicted += 1
        report.evicted_bytes += size
        report.evicted_sha1s.append(sha1)


def _evict(
    storage: LocalStorage, cached: int, max_size: int, cutoff: float, report: CollectReport
) -> int:
    index = storage.open_index()
    conn = index.db()
    top = os.path.join(
        str(storage.root), "sha1"
    )  # string paths: pathlib costs more than the unlink
    while cached > max_size:
        batch = index.oldest_cached(cutoff, BATCH)
        if not batch:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sha1, size in batch:
                if cached <= max_size:
                    break
                gone = conn.execute(
                    "DELETE FROM objects WHERE sha1 = ? AND origin = 'cached' AND is_link = 0 "
                    "AND last_used < ?",
                    (sha1, cutoff),
                ).rowcount
                if not gone:
                    continue  # pinned or used since it was chosen
                # Gone already when a collection was killed mid-batch: the row goes too.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{top}/{sha1[0:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}")
                cached -= size
                report.evicted += 1
                report.evicted_bytes += size
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(cached, 0)


def gc(
    storage: LocalStorage, max_size: Optional[int] = None, dry_run: bool = False
) -> CollectReport:
    """What `gc` does (kachery-client's and kachery-daemon's): evict cached objects down to
    `max_size` (default: the store's max_cache_size; unset: every cached object not used
    within the grace period), then remove abandoned temporary files and stale links."""
    limit = max_size if max_size is not None else storage.max_cache_size
    return collect(storage, limit or 0, dry_run=dry_run, housekeeping=True)


def sweep_temp_files(storage: LocalStorage, dry_run: bool = False) -> int:
    """Staging files of dead processes of this host, and anything else in the temp dir
    untouched for `ABANDONED_AFTER` (a resumable download given up on)."""
    temp = storage.temp_dir
    before = _listing(temp)
    if not dry_run:
        sweep_dead_staging_files(temp)
    old = time.time() - ABANDONED_AFTER
    removed = 0
    for name, st in before.items():
        if not (temp / name).exists():
            removed += 1
        elif st.st_mtime < old:
            removed += 1
            if not dry_run:
                unlink_quietly(temp / name)
    return removed


def prune_stale_links(storage: LocalStorage, dry_run: bool = False) -> int:
    """Remove link records whose file vanished or changed (as `verify --prune-stale`)."""
    index = storage.open_index()
    pruned = 0
    for sha1 in index.links():
        path = storage.layout.link_path(sha1)
        try:
            record = LinkRecord.from_bytes(path.read_bytes())
        except FileNotFoundError:
            if not dry_run:
                index.forget([sha1])
            continue
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable or corrupt: `verify` quarantines those
        try:
            stale = record.mismatch(os.stat(record.path)) is not None
        except FileNotFoundError:
            stale = True
        except OSError:
            continue
        if stale:
            pruned += 1
            if not dry_run:
                unlink_quietly(path)
                index.forget([sha1])
    return pruned


def usage(storage: LocalStorage) -> Dict[str, Dict[str, int]]:
    """Counts and bytes: pinned, cached, links (bytes of the linked files), quarantine,
    temporary files, total (pinned + cached + quarantine + temporary)."""
    totals = storage.open_index().totals()
    out = {key: {"count": n, "bytes": b} for key, (n, b) in totals.items()}
    for key, directory in (("quarantine", storage.quarantine_dir), ("temporary", storage.temp_dir)):
        listing = _listing(directory)
        out[key] = {"count": len(listing), "bytes": sum(st.st_size for st in listing.values())}
    parts = (PINNED, CACHED, "quarantine", "temporary")
    out["total"] = {
        "count": sum(out[k]["count"] for k in parts),
        "bytes": sum(out[k]["bytes"] for k in parts),
    }
    return out


def set_pinned(storage: LocalStorage, sha1s: Iterable[str], pinned: bool) -> int:
    """Pin (or unpin) objects that are in the store; `NotFoundError` names one that is not."""
    index = storage.open_index()
    wanted = list(dict.fromkeys(sha1s))
    for sha1 in wanted:
        if index.row(sha1) is None:
            path = storage.layout.object_path(sha1)
            if not path.is_file():
                raise NotFoundError(f"sha1://{sha1} is not in {storage.root}")
            index.add_unknown(sha1, path.stat().st_size)
    return index.set_origin(wanted, PINNED if pinned else CACHED)


def drop(storage: LocalStorage, sha1s: Iterable[str], force: bool = False) -> List[Tuple[str, int]]:
    """Remove objects now (cached ones; pinned ones and link records only with `force`).
    Returns (sha1, bytes) of what was removed."""
    index = storage.open_index()
    wanted = list(dict.fromkeys(sha1s))
    rows = {sha1: index.row(sha1) for sha1 in wanted}
    if not force:
        kept = [s for s, row in rows.items() if row is None or row[0] != CACHED or row[1]]
        present = [s for s in kept if storage.has(s) or storage.layout.link_path(s).exists()]
        if present:
            raise InvalidInputError(
                f"sha1://{present[0]} is pinned"
                + (f" (and {len(present) - 1} more)" if len(present) > 1 else ""),
                "unpin it first, or drop it with --force (it is then gone from this store)",
            )
    removed: List[Tuple[str, int]] = []
    conn = index.db()
    with gc_lock(storage.root, True, (storage.shared_group_mode & 0o666) or None):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sha1 in wanted:
                conn.execute("DELETE FROM objects WHERE sha1 = ?", (sha1,))
                size = _unlink_size(storage.layout.object_path(sha1))
                link = _unlink_size(storage.layout.link_path(sha1))
                if size is not None or link is not None:
                    removed.append((sha1, size or 0))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return removed


def _unlink_size(path: Path) -> Optional[int]:
    try:
        size = os.lstat(path).st_size
        os.unlink(path)
    except FileNotFoundError:
        return None
    return size


def _listing(directory: Path) -> Dict[str, os.stat_result]:
    out: Dict[str, os.stat_result] = {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return out
    for entry in entries:
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False):
                out[entry.name] = st
    return out


def usage_lines(figures: Dict[str, Dict[str, int]]) -> List[str]:
    """`usage` as both CLIs print it: one aligned line per kind."""
    return [
        f"{kind:<10} {part['count']:>10} objects {human_size(part['bytes']):>12}"
        for kind, part in figures.items()
    ]


def hashes_of(storage: LocalStorage, uris: Iterable[str]) -> List[str]:
    """The objects URIs stand for: a file's (and its manifest's); for a `sha1dir://` URI
    its directory object and every file of the tree (or sub-tree) it names."""
    out: List[str] = []
    for text in uris:
        parsed = parse_any_uri(text)
        out.append(parsed.sha1)
        if isinstance(parsed, ContentUri):
            if parsed.manifest_sha1:
                out.append(parsed.manifest_sha1)
            continue
        where = str(parsed)
        tree = Directory.from_bytes(storage.require(parsed.sha1).read_bytes(), where)
        found = tree.lookup(parsed.path, where) if parsed.path else tree
        entries = [e for _, e in found.walk()] if isinstance(found, Directory) else [found]
        for entry in entries:
            out.extend(h for h in (entry.sha1, entry.manifest_sha1) if h)
    return out
