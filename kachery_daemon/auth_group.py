"""`--auth-group`: the group given the client-auth file, checked when the node starts.

Only the standard library (and `kachery_core.errors`) at import: the CLI loads this on
every command.
"""

from __future__ import annotations

import os
from pathlib import Path

from kachery_core.errors import ConfigError


def auth_group_id(name: str, storage_dir: Path) -> int:
    """The ID of group `name`, checked before anything is written: `ConfigError` (one
    line) when there is no such group or this process cannot give files to it."""
    import grp

    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(
            f"unknown group {name!r} for --auth-group", "create it or name an existing group"
        ) from None
    _check_member(name, gid, storage_dir)
    return gid


def _check_member(name: str, gid: int, storage_dir: Path) -> None:
    """Before anything is written: can this process give a file to the group (be in it, or
    hold the right to chown)? Tried on a scratch file, so the kernel's own rule decides;
    if not, a one-line error naming the group, the client-auth file and what to do."""
    import tempfile

    try:
        with tempfile.TemporaryFile() as scratch:
            try:
                os.fchown(scratch.fileno(), -1, gid)
                return
            except PermissionError:
                pass
    except OSError:  # no scratch space: writing client-auth itself will tell
        return
    import pwd

    from kachery_core.store.layout import StorageLayout

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    raise ConfigError(
        f"cannot give {StorageLayout(storage_dir).client_auth_path} to group {name!r}"
        f" (--auth-group): user {user} is not a member of it",
        f"add the user (usermod -aG {name} {user}) and start the node from a new login,"
        " or leave out --auth-group",
    )
