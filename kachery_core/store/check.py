"""Checking a storage directory: re-hash objects and links, and set damaged ones aside.

The one implementation behind `kachery-client verify` and `kachery-daemon verify`.
Every entry under `<dir>/sha1/` is one of:

- an object whose bytes hash to its name: fine;
- an object whose bytes do not (or that is not a regular file): *damaged*; it is
  moved to `<dir>/quarantine/<sha1>.<time>-<random>` so that a later load misses it and
  fetches a good copy (from a channel, or by storing the file again);
- a link record whose file is unchanged (size, mtime and, in newer records, inode,
  device and ctime) and hashes to its name: fine;
- a link record whose file is gone or changed: *stale*. Lookups already refuse it, so it
  is only reported, and removed when `prune_stale` is set;
- a link record that cannot be read, or whose unchanged file hashes to another name:
  *damaged*, and quarantined like an object.

A URI asked for that is in the directory in neither form is *missing*. Moving aside is
a rename, so checking is safe while a node serves the directory: a reader that already
opened the file keeps its bytes, a later lookup misses. Hashes are streamed (memory
stays flat whatever the object's size).

    >>> check = StoreCheck(LocalStorage(Path("/data/kachery-storage")))   # doctest: +SKIP
    >>> report = check.run(on_finding=lambda f: print(f.line()))          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional

from kachery_core.content.uri import is_sha1, parse_uri
from kachery_core.store.layout import LINK_SUFFIX
from kachery_core.store.local import LinkRecord, LocalStorage, unlink_quietly

DAMAGED = "damaged"
STALE = "stale"
MISSING = "missing"
UNREADABLE = "unreadable"

BLOCK = 1 << 20

Progress = Callable[[int], None]
"""Called with the bytes checked so far (a `kachery_core.progress.ProgressBar` is one)."""


@dataclass(frozen=True)
class Finding:
    """One entry that is not as it should be, and what was done about it."""

    kind: str
    sha1: str
    what: str
    action: str

    def line(self) -> str:
        return f"{self.kind}: sha1://{self.sha1} {self.what}; {self.action}"


@dataclass(frozen=True)
class Entry:
    sha1: str
    path: Path
    is_link: bool
    size: int


@dataclass
class CheckReport:
    objects: int = 0
    links: int = 0
    bytes: int = 0
    findings: List[Finding] = field(default_factory=list)

    def summary(self, root: Path) -> str:
        counts = {kind: 0 for kind in (DAMAGED, STALE, MISSING, UNREADABLE)}
        for finding in self.findings:
            counts[finding.kind] += 1
        found = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "all good"
        return (
            f"checked {self.objects} objects and {self.links} links "
            f"({self.bytes} bytes) in {root}: {found}"
        )


class StoreCheck:
    """Check every entry of a storage directory, or the ones named by `uris`."""

    def __init__(
        self,
        storage: LocalStorage,
        uris: Optional[Iterable[str]] = None,
        prune_stale: bool = False,
    ) -> None:
        self.storage = storage
        self.prune_stale = prune_stale
        self.missing: List[str] = []
        if uris is None:
            self.entries = list(_walk(storage))
        else:
            self.entries = list(self._named(uris))
        self.total_bytes = sum(entry.size for entry in self.entries)
        self._done = 0

    def run(
        self,
        progress: Optional[Progress] = None,
        on_finding: Optional[Callable[[Finding], None]] = None,
    ) -> CheckReport:
        report = CheckReport()

        def found(finding: Finding) -> None:
            report.findings.append(finding)
            if on_finding is not None:
                on_finding(finding)

        for sha1 in self.missing:
            found(Finding(MISSING, sha1, f"is not in {self.storage.root}", "nothing to check"))
        for entry in self.entries:
            if entry.is_link:
                report.links += 1
                finding = self._check_link(entry, progress)
            else:
                report.objects += 1
                finding = self._check_object(entry, progress)
            if finding is not None:
                found(finding)
        report.bytes = self._done
        return report

    # -- entries -------------------------------------------------------------------

    def _named(self, uris: Iterable[str]) -> Iterator[Entry]:
        layout = self.storage.layout
        for text in uris:
            sha1 = parse_uri(text).sha1
            entries = [
                entry
                for entry in (
                    _entry(sha1, layout.object_path(sha1), False),
                    _entry(sha1, layout.link_path(sha1), True),
                )
                if entry is not None
            ]
            if not entries:
                self.missing.append(sha1)
            yield from entries

    # -- checks --------------------------------------------------------------------

    def _check_object(self, entry: Entry, progress: Optional[Progress]) -> Optional[Finding]:
        try:
            st = os.lstat(entry.path)
        except FileNotFoundError:
            return None  # removed meanwhile (superseded, or checked by another run)
        if not stat.S_ISREG(st.st_mode):
            return self._set_aside(entry, "is not a regular file", st.st_ino)
        try:
            with open(entry.path, "rb", buffering=0) as f:
                opened = os.fstat(f.fileno())
                digest = self._hash(f, progress)
        except FileNotFoundError:
            return None
        except PermissionError:
            return Finding(UNREADABLE, entry.sha1, f"at {entry.path} cannot be read", "skipped")
        if digest == entry.sha1:
            return None
        return self._set_aside(entry, f"at {entry.path} hashes to {digest}", opened.st_ino)

    def _check_link(self, entry: Entry, progress: Optional[Progress]) -> Optional[Finding]:
        try:
            record = LinkRecord.from_bytes(entry.path.read_bytes())
        except FileNotFoundError:
            return None
        except PermissionError:
            return Finding(UNREADABLE, entry.sha1, f"link record {entry.path}", "skipped")
        except (ValueError, KeyError, TypeError):
            return self._set_aside(entry, f"has a corrupt link record {entry.path}", None)
        what = f"link to {record.path}"
        try:
            before = os.stat(record.path)
        except FileNotFoundError:
            return self._stale(entry, f"{what}: the file is gone")
        except OSError as exc:
            return Finding(UNREADABLE, entry.sha1, f"{what}: {exc.strerror}", "skipped")
        changed = record.mismatch(before)
        if changed is None and not stat.S_ISREG(before.st_mode):
            changed = "not a regular file now"
        if changed is not None:
            return self._stale(entry, f"{what}: the file has changed ({changed})")
        try:
            with open(record.path, "rb", buffering=0) as f:
                digest = self._hash(f, progress)
            after = os.stat(record.path)
        except OSError as exc:
            return Finding(UNREADABLE, entry.sha1, f"{what}: {exc.strerror}", "skipped")
        changed = record.mismatch(after)
        if changed is not None:
            return self._stale(entry, f"{what}: the file changed while it was read ({changed})")
        if digest == entry.sha1:
            return None
        return self._set_aside(entry, f"{what}: the unchanged file hashes to {digest}", None)

    def _hash(self, f: object, progress: Optional[Progress]) -> str:
        digest = hashlib.sha1()
        view = memoryview(bytearray(BLOCK))
        read_into = f.readinto  # type: ignore[attr-defined]
        while True:
            n = read_into(view)
            if not n:
                return digest.hexdigest()
            digest.update(view[:n])
            self._done += n
            if progress is not None:
                progress(self._done)

    # -- actions -------------------------------------------------------------------

    def _set_aside(self, entry: Entry, what: str, hashed_ino: Optional[int]) -> Finding:
        if hashed_ino is not None:
            try:
                if os.lstat(entry.path).st_ino != hashed_ino:
                    return Finding(DAMAGED, entry.sha1, what, "replaced meanwhile; left in place")
            except FileNotFoundError:
                return Finding(DAMAGED, entry.sha1, what, "removed meanwhile")
        try:
            moved = self.storage.quarantine(entry.path, entry.sha1)
        except OSError as exc:
            return Finding(DAMAGED, entry.sha1, what, f"could not move it aside: {exc.strerror}")
        return Finding(DAMAGED, entry.sha1, what, f"moved to {moved}")

    def _stale(self, entry: Entry, what: str) -> Finding:
        if not self.prune_stale:
            return Finding(STALE, entry.sha1, what, "record kept (--prune-stale removes it)")
        unlink_quietly(entry.path)
        return Finding(STALE, entry.sha1, what, f"removed {entry.path}")


def _walk(storage: LocalStorage) -> Iterator[Entry]:
    """Every object and link record under `<dir>/sha1/`, in a stable order."""
    top = storage.root / "sha1"
    for level1 in _subdirs(top):
        for level2 in _subdirs(level1):
            for level3 in _subdirs(level2):
                for name in sorted(os.listdir(level3)):
                    is_link = name.endswith(LINK_SUFFIX)
                    sha1 = name[: -len(LINK_SUFFIX)] if is_link else name
                    if not is_sha1(sha1) or sha1 != sha1.lower():
                        continue  # a leftover staging file (".NAME.HOST-PID-....part")
                    entry = _entry(sha1, level3 / name, is_link)
                    if entry is not None:
                        yield entry


def _subdirs(path: Path) -> List[Path]:
    try:
        names = sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [path / name for name in names if (path / name).is_dir()]


def _entry(sha1: str, path: Path, is_link: bool) -> Optional[Entry]:
    """An entry and the bytes checking it will read (for the progress bar's total)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    if is_link:
        try:
            size = LinkRecord.from_bytes(path.read_bytes()).size
        except (OSError, ValueError, KeyError, TypeError):
            size = 0
    return Entry(sha1, path, is_link, size)


def check_and_report(storage: LocalStorage, uris: Optional[List[str]], prune_stale: bool) -> int:
    """Both CLIs' `verify`: check `storage`, one line per finding on stdout, a summary and
    (on a terminal) a progress bar on stderr; return the exit code (1 when anything was
    found)."""
    from kachery_core.progress import progress_bar

    check = StoreCheck(storage, uris, prune_stale)
    bar = progress_bar("verifying", check.total_bytes)
    try:
        report = check.run(bar, lambda finding: print(finding.line(), flush=True))
    finally:
        if bar:
            bar.close()
    print(report.summary(storage.root), file=sys.stderr, flush=True)
    return 1 if report.findings else 0
