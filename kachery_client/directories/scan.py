"""Walking a local folder before it is stored: what will be stored, and what cannot be.

The whole tree is walked before a byte is stored, so a folder with a broken link or a
FIFO in it fails at once (or, with `skip_errors`, leaves those out) instead of after an
hour of uploads. Symbolic links to files are stored as the files they point to; links to
directories are not followed (a loop would never end, and a link out of the tree would
store what the user did not name), nor are broken links or special files stored.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

from kachery_client.file_kinds import file_kind
from kachery_core.content.directory import name_problem
from kachery_core.errors import InvalidInputError


@dataclass(frozen=True)
class ScannedFile:
    path: Tuple[str, ...]
    """Names from the scanned root down to the file."""
    local_path: str
    size: int


@dataclass
class ScannedFolder:
    root: Path
    files: List[ScannedFile] = field(default_factory=list)
    dirs: List[Tuple[str, ...]] = field(default_factory=list)
    """Every directory below the root, parents first (so empty ones are kept too)."""
    problems: List[str] = field(default_factory=list)
    """One line per entry that cannot be stored, naming it and why."""

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def scan_folder(root: Path) -> ScannedFolder:
    """Walk `root` (a directory) in sorted order; problems are collected, not raised."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise InvalidInputError(f"no such folder: {str(root)!r}", "check the path") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(
            f"{str(root)!r} is not a directory", "store a single file without -r"
        )
    tree = ScannedFolder(root)
    _scan(root, (), tree)
    return tree


def _scan(folder: Path, prefix: Tuple[str, ...], tree: ScannedFolder) -> None:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        tree.problems.append(f"{str(folder)!r}: cannot list it ({exc.strerror})")
        return
    for entry in entries:
        shown = os.path.join(str(folder), entry.name)
        problem = name_problem(entry.name)
        if problem is not None:
            tree.problems.append(f"{shown!r}: the name {problem}")
            continue
        try:
            link = entry.is_symlink()
            st = os.stat(entry.path)  # follows links: a link to a file is its content
        except FileNotFoundError:
            tree.problems.append(f"{shown!r}: broken symbolic link")
            continue
        except OSError as exc:
            tree.problems.append(f"{shown!r}: {exc.strerror}")
            continue
        path = prefix + (entry.name,)
        if stat.S_ISREG(st.st_mode):
            tree.files.append(ScannedFile(path, entry.path, st.st_size))
        elif stat.S_ISDIR(st.st_mode) and link:
            tree.problems.append(f"{shown!r}: symbolic link to a directory (not followed)")
        elif stat.S_ISDIR(st.st_mode):
            tree.dirs.append(path)
            _scan(Path(entry.path), path, tree)
        else:
            tree.problems.append(f"{shown!r}: {file_kind(st.st_mode)}, not a regular file")
