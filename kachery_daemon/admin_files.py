"""What the `kachery-daemon` admin commands work on: the storage directory, found as
`start` finds it, and the token files `token create --output` writes.

Kept apart from cli.py, which holds the commands themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

from kachery_core.errors import ConfigError
from kachery_core.settings.config import resolve_config


def storage_dir_setting(value: Optional[str]) -> Path:
    """The storage directory as settings give it (flag, environment, config), unchecked."""
    config = resolve_config(
        {"storage_dir": value} if value else {}, explicit_source="--storage-dir"
    )
    return config.storage_dir


def node_storage(value: Optional[str], need_node: bool = False) -> Tuple[Path, str]:
    """The storage directory a command works on, found as `start` finds it (--storage-dir,
    else KACHERY_STORAGE_DIR, else `storage_dir` in a config file, else the default), and
    where it came from ("from KACHERY_STORAGE_DIR"), for the command to say.

    It must exist (`need_node`: and hold a kachery-node-id, as every node's does from its
    first start): a command never creates a storage directory, which would only leave a
    stray one where the admin meant another.
    """
    config = resolve_config(
        {"storage_dir": value} if value else {}, explicit_source="--storage-dir"
    )
    root = config.storage_dir
    where = _storage_source(config.source("storage_dir"))
    hint = "pass --storage-dir DIR, the directory the node was started with (or set KACHERY_STORAGE_DIR)"
    if not root.is_dir():
        raise ConfigError(f"no storage directory at {root} ({where})", hint)
    if need_node and not (root / "kachery-node-id").is_file():
        raise ConfigError(
            f"{root} ({where}) is no node's storage directory: it has no kachery-node-id file",
            hint + "; a new node's directory gets one when the node first starts",
        )
    return root, where


def _storage_source(source: str) -> str:
    """ "from KACHERY_STORAGE_DIR", "from --storage-dir", "from config file F", "the default"."""
    if source == "default":
        return "the default"
    if source.startswith("environment "):
        return "from " + source[len("environment ") :]
    return "from " + source


def check_token_output(path: Path, force: bool) -> None:
    """Refuse an --output the token cannot go to, before any token is made."""
    if path.is_dir():
        raise ConfigError(f"--output {path} is a directory", "name a file to create")
    if (path.exists() or path.is_symlink()) and not force:
        raise ConfigError(
            f"--output {path} already exists",
            "choose a new file, or pass --force to replace it",
        )
    if not path.parent.is_dir():
        raise ConfigError(
            f"--output {path}: no directory {path.parent}", "create it first, or name another file"
        )


def write_token_file(path: Path, secret: str, force: bool) -> None:
    """The token into `path`, readable by its owner only from its first byte: a new file is
    created 0600 (never following a link), a replaced one swapped in whole by a rename."""
    data = (secret + "\n").encode()
    if force:
        from kachery_core.atomic_file import write_atomically

        write_atomically(path, data, 0o600)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
