"""`Client`'s storage-use methods: usage, pin, unpin, drop, gc, on the storage directory
this machine keeps for the active backend (the embedded store, or a remote node's cache).

The work itself is `kachery_core.store.collect`, shared with `kachery-daemon`; this only
hands over the storage directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from kachery_core.content.uri import ContentUri, DirUri
from kachery_core.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from kachery_core.backend.base import Backend
    from kachery_core.store.collect import CollectReport
    from kachery_core.store.local import LocalStorage

UriLike = Union[str, ContentUri, DirUri]


class StorageUse:
    """Mixed into `Client` (which supplies `backend` and `local_store`)."""

    @property
    def backend(self) -> Backend:  # pragma: no cover - Client's
        raise NotImplementedError

    def local_store(self) -> LocalStorage:  # pragma: no cover - Client's
        raise NotImplementedError

    def usage(self) -> Dict[str, Dict[str, int]]:
        """Objects and bytes: total, pinned, cached, links, quarantine, temporary files
        (from the index, without walking the store)."""
        from kachery_core.store import collect as store_collect

        return store_collect.usage(self.local_store())

    def pin(self, uris: Sequence[UriLike]) -> int:
        """Keep objects whatever gc does; a `sha1dir://` URI pins its whole tree.
        Returns how many objects changed."""
        from kachery_core.store import collect as store_collect

        return store_collect.set_pinned(self.local_store(), self._hashes(uris), True)

    def unpin(self, uris: Sequence[UriLike]) -> int:
        """Let gc evict objects (they become cached); a `sha1dir://` URI unpins its tree."""
        from kachery_core.store import collect as store_collect

        return store_collect.set_pinned(self.local_store(), self._hashes(uris), False)

    def drop(self, uris: Sequence[UriLike], force: bool = False) -> List[Tuple[str, int]]:
        """Remove cached objects now; pinned ones (and link records) only with `force`.
        Returns the (sha1, bytes) removed."""
        from kachery_core.store import collect as store_collect

        return store_collect.drop(self.local_store(), self._hashes(uris), force)

    def gc(self, max_size: Optional[int] = None, dry_run: bool = False) -> CollectReport:
        """Evict cached objects, least recently used first, until the store's objects take
        at most `max_size` bytes (default: the max_cache_size setting; unset: every cached
        object not used within the grace period); remove abandoned temporary files and
        stale link records."""
        from kachery_core.store import collect as store_collect

        return store_collect.gc(self.local_store(), max_size, dry_run)

    def _hashes(self, uris: Sequence[UriLike]) -> List[str]:
        from kachery_core.store import collect as store_collect

        return store_collect.hashes_of(self.local_store(), [str(uri) for uri in uris])


def init_shared(directory: Union[str, os.PathLike[str]], group: str) -> Dict[str, Any]:
    """Make `directory` a storage directory that the members of `group` share without a
    node: it and every directory below it get the group, setgid and group rwx; files the
    group and group read (objects stay read-only). Later writes keep this (`LocalStorage`
    reads the setgid bit of the root). Returns what was done."""
    try:
        import grp

        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            f"no group named {group!r} on this machine", "create it first (groupadd NAME)"
        ) from None
    root = Path(os.fspath(directory)).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"{root} is not a directory", "name a directory for the store")
    root.mkdir(parents=True, exist_ok=True)
    changed = 0
    for path in [root, *_below(root)]:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_gid != gid:
            os.chown(path, -1, gid)
        if stat.S_ISDIR(st.st_mode):
            mode = stat.S_IMODE(st.st_mode) | 0o2770
        else:
            mode = stat.S_IMODE(st.st_mode) | (0o060 if st.st_mode & 0o200 else 0o040)
        os.chmod(path, mode)
        changed += 1
    for name in ("sha1", "tmp"):
        sub = root / name
        if not sub.exists():
            sub.mkdir()
            os.chown(sub, -1, gid)
            os.chmod(sub, 0o2770)
    return {"storage_dir": str(root), "group": group, "gid": gid, "entries": changed}


def _below(root: Path) -> Iterable[Path]:
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            yield Path(top) / name
