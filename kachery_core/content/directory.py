"""The directory object: one JSON document that names a whole tree of files by content.

    {"dirs": {"raw": {"dirs": {}, "files": {"x.bin": {"sha1": "...", "size": 4}}}},
     "files": {"params.json": {"sha1": "...", "size": 17}}}

It is stored as an ordinary object, and `sha1dir://<its sha1>.<label>` names the tree
(see ../shared/protocol.md, "Directories"). Sub-directories are nested inline. A file over
20,000,000 bytes also carries `"manifestSha1"`, so a load can fetch its chunks in parallel.

Reading accepts any valid object, including those of the earlier writers (keys in listing
order, default separators); unknown keys are ignored. Writing is canonical (keys sorted,
compact separators, UTF-8), so the same tree gets the same URI on every machine. The bytes
of a directory object come from peers, so every name and number is checked here: a name
that could walk out of a destination folder (`..`, `/`) is refused, never followed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional, Tuple, Union

from kachery_core.content.uri import ContentUri, is_sha1
from kachery_core.errors import IntegrityError, InvalidInputError, NotFoundError

MAX_DIRECTORY_OBJECT_BYTES = 256 << 20
"""A directory object larger than this is refused (about two million files)."""

MAX_DEPTH = 256
"""Deeper nesting is refused: no real dataset is this deep, and a parser must be bounded."""


@dataclass(frozen=True)
class FileEntry:
    """A file of a directory: its size and hash (and its manifest's hash when large).

    `sha1` is None only in objects that earlier writers made without hashes; such a
    file can be listed but not loaded.
    """

    size: int
    sha1: Optional[str]
    manifest_sha1: Optional[str] = None

    def uri(self, name: str) -> ContentUri:
        """The `sha1://` URI of the file, labelled with its name."""
        if self.sha1 is None:
            raise NotFoundError(
                f"the directory entry {name!r} has no sha1",
                "it was written without hashes and cannot be loaded; store the folder again",
            )
        return ContentUri(self.sha1, name, self.manifest_sha1)

    def to_json(self) -> Dict[str, Any]:
        doc: Dict[str, Any] = {"size": self.size}
        if self.sha1 is not None:
            doc["sha1"] = self.sha1
        if self.manifest_sha1 is not None:
            doc["manifestSha1"] = self.manifest_sha1
        return doc


@dataclass
class Directory:
    """A tree: files and sub-directories by name (names are single path components)."""

    files: Dict[str, FileEntry] = field(default_factory=dict)
    dirs: Dict[str, Directory] = field(default_factory=dict)

    # -- writing ------------------------------------------------------------------

    def to_json(self) -> Dict[str, Any]:
        return {
            "dirs": {name: sub.to_json() for name, sub in self.dirs.items()},
            "files": {name: entry.to_json() for name, entry in self.files.items()},
        }

    def to_bytes(self) -> bytes:
        """The canonical serialization: sorted keys, compact separators, UTF-8."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")

    def add_file(self, path: Tuple[str, ...], entry: FileEntry) -> None:
        """Add a file at `path` (names), making the directories above it."""
        self.subdir(path[:-1]).files[path[-1]] = entry

    def subdir(self, path: Tuple[str, ...]) -> Directory:
        """The directory at `path`, made (empty) where missing."""
        node = self
        for name in path:
            node = node.dirs.setdefault(name, Directory())
        return node

    # -- reading ------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Directory:
        """Parse a directory object; `where` (its URI) names it in every error."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _bad(where, f"it is not JSON ({type(exc).__name__})") from None
        return cls.from_json(doc, where)

    @classmethod
    def from_json(cls, doc: Any, where: str, depth: int = 0) -> Directory:
        if depth > MAX_DEPTH:
            raise _bad(where, f"it nests deeper than {MAX_DEPTH} directories")
        if not isinstance(doc, dict):
            raise _bad(where, "a directory is not a JSON object")
        files_doc, dirs_doc = doc.get("files", {}), doc.get("dirs", {})
        if not isinstance(files_doc, dict) or not isinstance(dirs_doc, dict):
            raise _bad(where, "'files' and 'dirs' must be JSON objects")
        directory = cls()
        for name, entry in files_doc.items():
            check_name(name, where)
            directory.files[name] = _file_entry(entry, name, where)
        for name, sub in dirs_doc.items():
            check_name(name, where)
            if name in directory.files:
                raise _bad(where, f"{name!r} is both a file and a directory")
            directory.dirs[name] = cls.from_json(sub, where, depth + 1)
        return directory

    def lookup(self, path: Tuple[str, ...], where: str) -> Union[FileEntry, Directory]:
        """The entry at `path`: a `FileEntry` or a `Directory`; `NotFoundError` if absent."""
        node: Directory = self
        for i, name in enumerate(path):
            if name in node.dirs:
                node = node.dirs[name]
            elif name in node.files and i == len(path) - 1:
                return node.files[name]
            else:
                shown = "/".join(path[: i + 1])
                raise NotFoundError(
                    f"{where} has no entry {shown!r}",
                    "list it with `kachery-client ls` to see what it holds",
                )
        return node

    def walk(self, prefix: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], FileEntry]]:
        """Every file below, with its path of names, in sorted order."""
        for name in sorted(self.files):
            yield prefix + (name,), self.files[name]
        for name in sorted(self.dirs):
            yield from self.dirs[name].walk(prefix + (name,))

    def walk_dirs(self, prefix: Tuple[str, ...] = ()) -> Iterator[Tuple[str, ...]]:
        """Every directory below (not this one), parents before children."""
        for name in sorted(self.dirs):
            yield prefix + (name,)
            yield from self.dirs[name].walk_dirs(prefix + (name,))

    def totals(self) -> Tuple[int, int]:
        """(number of files, total bytes) below."""
        count = size = 0
        for _path, entry in self.walk():
            count += 1
            size += entry.size
        return count, size


def check_name(name: object, where: str) -> str:
    """A name is one path component: not empty, `.` or `..`, no `/`, `\\` or control chars."""
    problem = name_problem(name)
    if problem is not None:
        raise _bad(where, f"the name {name!r} {problem}")
    assert isinstance(name, str)
    return name


def name_problem(name: object) -> Optional[str]:
    """Why `name` cannot be a name in a directory object, or None if it can."""
    if not isinstance(name, str) or not name:
        return "is empty or not text"
    if name in (".", ".."):
        return "is a relative path component"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):  # C0, DEL and C1 controls
        return "contains control characters"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def _file_entry(doc: Any, name: str, where: str) -> FileEntry:
    if not isinstance(doc, dict):
        raise _bad(where, f"the entry of {name!r} is not a JSON object")
    size = doc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(where, f"the size of {name!r} is {size!r}, not a byte count")
    sha1, manifest = doc.get("sha1"), doc.get("manifestSha1")
    if sha1 is not None and not is_sha1(sha1):
        raise _bad(where, f"the sha1 of {name!r} is {sha1!r}, not a SHA-1 hash")
    if manifest is not None and not is_sha1(manifest):
        manifest = None  # an unusable hint, not a reason to refuse the whole tree
    return FileEntry(
        size,
        sha1.lower() if isinstance(sha1, str) else None,
        manifest.lower() if isinstance(manifest, str) else None,
    )


def _bad(where: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"{where} is not a usable directory object: {why}",
        "check the URI; a directory object names its files by hash and size",
    )


def not_a_directory(where: str) -> InvalidInputError:
    return InvalidInputError(f"{where} is a file, not a directory", "load it without -r")
