"""Which files of this machine a client may have the node read by naming their path.

`/storeFile`, `/linkFile` and gRPC `Link` make the node read a path the client names. The
node often runs as another user than its clients (they reach it through `--auth-group`),
so without a rule a client could have the node copy the node's own key, token file or
databases into storage and then download them. The rule, in one place for every API:

* never the node's private files: anything in its storage directory that is not an object
  (key, client-auth, tokens, databases, state and lock files, link records, staging files),
  nor its key or config file wherever they are (also through a symlink or a hard link: a
  writable file of the node's user with more than one name on the storage filesystem may
  be another name of one, and is refused); never a file of /proc or /sys (or any other
  kernel filesystem: they hold the node's environment and report sizes they do not have);
* only a file every holder of the client-auth code could read itself (`PathIdentity`).
  The node cannot see who sent a request, only who can read `client-auth`: the members of
  its group (`--auth-group`, else the node user's primary group). So a path is read as
  for a member of that group (world-readable, or group-readable by that group), or as for
  the node's user when it is the only one in that group, or not at all when the node
  cannot tell who is in it; `--path-identity` lets the admin say instead. Every directory
  above the file must be searchable by the same rule.

A refusal does not tell whether the path exists: a missing path, an unreadable one and a
private one get the same one-line answer. The file is opened once and every check is made
on the open file (`fstat`), so it cannot be swapped for another between check and read.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, Optional, Set, Tuple

from kachery_core.errors import InvalidInputError
from kachery_core.store.local import check_regular_file

MAX_PATH_CHARS = 4096
"""Longest path a client may name (Linux's PATH_MAX)."""

NODE_USER, GROUP, NONE, AUTO = "node-user", "group", "none", "auto"
PATH_IDENTITIES = (AUTO, NODE_USER, GROUP, NONE)
"""The values of `kachery-daemon start --path-identity`."""

KERNEL_ROOTS = (Path("/proc"), Path("/sys"))
KERNEL_FILESYSTEMS = frozenset(
    [
        "proc",
        "sysfs",
        "debugfs",
        "tracefs",
        "securityfs",
        "configfs",
        "cgroup",
        "cgroup2",
        "bpf",
        "efivarfs",
        "pstore",
        "binfmt_misc",
        "fusectl",
        "devtmpfs",
        "devpts",
        "mqueue",
        "hugetlbfs",
        "nsfs",
        "rpc_pipefs",
    ]
)
"""Filesystems whose files are the kernel's, never data: refused wherever mounted."""


class PathRefused(InvalidInputError):
    """The path is missing, unreadable by the client, or private to the node (not said which)."""


def refused(shown: str) -> PathRefused:
    return PathRefused(
        f"cannot read {shown!r}: no such file, or not one this node may read for its clients",
        "name a file the client itself can read (world-readable, or group-readable by the "
        "node's auth group); the node's own files are never read",
    )


@dataclass(frozen=True)
class ClientFile:
    """A file opened for a client: its real path, the open file, and its stat at opening."""

    path: Path
    fd: int
    stat: os.stat_result

    def close(self) -> None:
        os.close(self.fd)


@dataclass(frozen=True)
class PathIdentity:
    """Whom the node reads paths for: `kind` NODE_USER (user `uid`), GROUP (any member of
    group `gid`, the group of client-auth) or NONE (nobody), and why (logged at start)."""

    kind: str
    uid: int
    gid: int
    reason: str

    def describe(self) -> str:
        if self.kind == NONE:
            return f"paths are read for no client ({self.reason})"
        whom = f"user {_user_name(self.uid)}" if self.kind == NODE_USER else None
        whom = whom or f"any member of group {_group_name(self.gid)}"
        return f"paths are read as for {whom} ({self.reason})"


def path_identity(asked: str, auth_file: Path, auth_group: Optional[int]) -> PathIdentity:
    """The identity `--path-identity asked` means for a node whose code is `auth_file`."""
    uid = os.getuid()
    gid = auth_group if auth_group is not None else os.stat(auth_file).st_gid
    if asked != AUTO:
        return PathIdentity(asked, uid, gid, f"--path-identity {asked}")
    if auth_group is not None:
        return PathIdentity(GROUP, uid, gid, "its members may read client-auth")
    members = _group_members(gid)
    if members is None:
        return PathIdentity(NONE, uid, gid, f"group {gid} of client-auth has no entry")
    others = sorted(members - {_user_name(uid)})
    if not others:
        return PathIdentity(NODE_USER, uid, gid, "no other user is in the group of client-auth")
    shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    return PathIdentity(GROUP, uid, gid, f"{shown} may read client-auth too")


@dataclass
class PathPolicy:
    """The readability rule of one node (see the module docstring)."""

    storage_root: Path
    private_files: Tuple[Path, ...] = ()
    """Private files outside or inside the storage directory: key, config, token file..."""
    identity: PathIdentity = field(
        default_factory=lambda: PathIdentity(NODE_USER, os.getuid(), os.getgid(), "default")
    )
    kernel_devices: FrozenSet[int] = field(default_factory=lambda: kernel_devices())

    def open(self, text: str, what: str = "localFilePath") -> ClientFile:
        """Open `text` for reading on a client's behalf, or `PathRefused`/`InvalidInputError`."""
        return self.checker().open(text, what)

    def checker(self) -> PathCheck:
        """The rule with the node's private files looked up once: for one request, which
        may name many paths (a batch store). Every file is still opened and checked on its
        own descriptor; a private file made during that request is refused all the same
        by the rule on writable files with several names."""
        return PathCheck(self)

    def _may_read(self, st: os.stat_result, owner: int, group: int, other: int) -> bool:
        mode = st.st_mode
        if mode & other:
            return True
        if self.identity.kind == GROUP:
            return bool(mode & group) and st.st_gid == self.identity.gid
        return bool(mode & owner) and st.st_uid == self.identity.uid

    def _private_candidates(self) -> Iterable[Path]:
        yield from self.private_files
        try:
            names = os.listdir(self.storage_root)
        except OSError:
            return
        for name in names:  # the top-level files: key, tokens, databases, state, lock...
            yield self.storage_root / name


class PathCheck:
    """`PathPolicy.open` for the paths of one request (see `PathPolicy.checker`)."""

    def __init__(self, policy: PathPolicy) -> None:
        self._policy = policy
        self._root = _real(policy.storage_root)
        self._private = frozenset(_real(p) for p in policy.private_files)
        self._private_inodes: Optional[Set[Tuple[int, int]]] = None
        self._device = _device_of(policy.storage_root)
        self._searchable: Dict[Path, bool] = {}

    def open(self, text: str, what: str = "localFilePath") -> ClientFile:
        check_path_text(text, what)
        shown = text[:200]
        identity = self._policy.identity
        if identity.kind == NONE:
            raise PathRefused(
                f"this node reads no path for its clients: {identity.reason}",
                "send the bytes instead (clients do so on their own); the node's admin may "
                "start it with --auth-group GROUP or --path-identity node-user|group",
            )
        try:
            real = Path(os.path.realpath(text))
        except (OSError, ValueError):
            raise refused(shown) from None
        if self._is_private_path(real) or _under(real, KERNEL_ROOTS):
            raise refused(shown)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            raise refused(shown) from None
        try:
            st = os.fstat(fd)
            if (
                not self._policy._may_read(st, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)
                or self._is_private_inode(st)
                or st.st_dev in self._policy.kernel_devices
                or not self._ancestors_searchable(real)
            ):
                raise refused(shown)
            check_regular_file(st, shown)
        except BaseException:
            os.close(fd)
            raise
        return ClientFile(real, fd, st)

    def _ancestors_searchable(self, real: Path) -> bool:
        for directory in real.parents:
            known = self._searchable.get(directory)
            if known is None:
                try:
                    st = os.stat(directory)
                except OSError:
                    known = False
                else:
                    known = self._policy._may_read(st, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
                self._searchable[directory] = known
            if not known:
                return False
        return True

    def _is_private_path(self, real: Path) -> bool:
        root = self._root
        if real == root or root in real.parents:
            return not _is_object_path(real.relative_to(root).parts)
        return real in self._private

    def _is_private_inode(self, st: os.stat_result) -> bool:
        if self._private_inodes is None:
            self._private_inodes = _inodes(self._policy._private_candidates())
        if (st.st_dev, st.st_ino) in self._private_inodes:
            return True
        # Another name of a link record, staging file or database deeper in the storage
        # directory cannot be found by its inode; all of them are writable by the node's
        # user, and objects (0444) are not.
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_nlink > 1
            and st.st_uid == os.getuid()
            and bool(st.st_mode & 0o222)
            and st.st_dev == self._device
        )


def check_path_text(text: str, what: str) -> None:
    """Refuse what no filesystem call should be given: NUL bytes, absurd lengths, relative."""
    if "\0" in text:
        raise InvalidInputError(f"{what} must not contain a NUL character")
    if len(text) > MAX_PATH_CHARS:
        raise InvalidInputError(f"{what} is longer than {MAX_PATH_CHARS} characters")
    if not os.path.isabs(text):
        raise InvalidInputError(f"{what} must be absolute, not {text[:200]!r}")
    try:
        os.fsencode(text)
    except UnicodeError:
        raise InvalidInputError(f"{what} is not valid Unicode text") from None


def _is_object_path(parts: Tuple[str, ...]) -> bool:
    """sha1/<2>/<2>/<2>/<40 hex> and nothing else (not a link record, not a staging file)."""
    if len(parts) != 5 or parts[0] != "sha1":
        return False
    name = parts[4]
    hexdigits = set("0123456789abcdef")
    return (
        len(name) == 40
        and set(name) <= hexdigits
        and (parts[1], parts[2], parts[3]) == (name[0:2], name[2:4], name[4:6])
    )


def kernel_devices(mountinfo: str = "/proc/self/mountinfo") -> FrozenSet[int]:
    """The device numbers of every mounted kernel filesystem (`KERNEL_FILESYSTEMS`)."""
    found = set()
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return frozenset()
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 3:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        major, _, minor = fields[2].partition(":")
        if fstype in KERNEL_FILESYSTEMS and major.isdigit() and minor.isdigit():
            found.add(os.makedev(int(major), int(minor)))
    return frozenset(found)


def _group_members(gid: int) -> Optional[Set[str]]:
    """The users in group `gid` (listed in it, or having it as primary group), or None
    when the group has no entry, so its members cannot be known."""
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return None
    members.update(p.pw_name for p in pwd.getpwall() if p.pw_gid == gid)
    return members


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _under(real: Path, roots: Iterable[Path]) -> bool:
    return any(real == root or root in real.parents for root in roots)


def _device_of(path: Path) -> int:
    try:
        return os.stat(path).st_dev
    except OSError:
        return -1


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inodes(paths: Iterable[Path]) -> Set[Tuple[int, int]]:
    found = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.add((st.st_dev, st.st_ino))
    return found
