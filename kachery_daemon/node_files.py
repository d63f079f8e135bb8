"""The files a node keeps in its storage directory, beside the objects.

kachery-node-id         the node ID (hex Ed25519 public key), no newline (mode 0644)
kachery-node-key.pem    the node's private key when none was given (mode 0600)
client-auth             the current client auth code (mode 0640, see auth.py)
kachery-daemon.json     pid, host and port of the running node, for info and stop (0600)
kachery-daemon.lock     held (fcntl) while a node runs: one node per directory (0600)
kachery-tokens.json, kachery-mutables.db, kachery-feeds.db (and their -wal/-shm files),
kachery-node.toml       private to the node's user (0600, see `secure_private_files`)

The node runs with umask 0o027 (`NODE_UMASK`), so whatever else it creates is at most
group-readable, and directories stay searchable by the auth group that reads objects.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from kachery_core import atomic_file
from kachery_core.errors import ConfigError
from kachery_core.protocol.node_key import generate_key_file, load_key_file, node_id_of
from kachery_core.secret_files import warn_if_exposed
from kachery_core.store.layout import StorageLayout

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE = "kachery-node-key.pem"
STATE_FILE = "kachery-daemon.json"
LOCK_FILE = "kachery-daemon.lock"
PRIVATE_MODE = 0o600
NODE_UMASK = 0o027
"""Files the node creates are not world-readable; directories stay group-searchable
(objects, 0444, must stay readable by the auth group). Private files are made 0600."""
DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")
PRIVATE_FILES = (KEY_FILE, STATE_FILE, LOCK_FILE, "kachery-tokens.json", "kachery-node.toml")


@dataclass
class NodeIdentity:
    key: Ed25519PrivateKey
    node_id: str
    key_path: Path

    def sign(self, message: bytes) -> str:
        return self.key.sign(message).hex()


def load_identity(storage_dir: Path, key_file: Optional[Path]) -> NodeIdentity:
    """The node's key: `key_file` if given, else the one kept in the storage directory."""
    path = key_file or storage_dir / KEY_FILE
    if key_file is None and not path.exists():
        generate_key_file(path)
    if key_file is not None:  # the node keeps its own key's mode private itself
        warn_if_exposed(key_file, "node key file", "the private key")
    key = load_key_file(path)
    identity = NodeIdentity(key, node_id_of(key), path)
    write_atomically(StorageLayout(storage_dir).node_id_path, identity.node_id.encode(), 0o644)
    return identity


class StorageLock:
    """An exclusive lock on a storage directory, released when the process ends."""

    def __init__(self, storage_dir: Path) -> None:
        self.path = storage_dir / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
        os.fchmod(fd, PRIVATE_MODE)  # one left by an older node may be 0644
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            state = read_state(self.path.parent)
            who = f" (pid {state['pid']}, port {state['port']})" if state else ""
            raise ConfigError(
                f"another node is already running on {self.path.parent}{who}",
                "stop it with `kachery-daemon stop`, or use another --storage-dir",
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_state(
    storage_dir: Path,
    host: str,
    port: int,
    node_id: str,
    label: str,
    tls: bool = False,
    grpc_port: Optional[int] = None,
) -> None:
    doc = {
        "pid": os.getpid(),
        "host": host,
        "port": port,
        "nodeId": node_id,
        "label": label,
        "tls": tls,
        "grpcPort": grpc_port,
    }
    write_atomically(storage_dir / STATE_FILE, json.dumps(doc).encode(), PRIVATE_MODE)


def read_state(storage_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        doc = json.loads((storage_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def clear_state(storage_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(storage_dir / STATE_FILE)


def secure_private_files(storage_dir: Path, databases: Tuple[str, ...]) -> None:
    """Make the node's private files 0600, and create its SQLite databases 0600 before
    SQLite opens them (SQLite gives a database's -wal and -shm files its mode)."""
    for name in databases:
        fd = os.open(storage_dir / name, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
        os.close(fd)
    names = list(PRIVATE_FILES) + [db + suffix for db in databases for suffix in DATABASE_SUFFIXES]
    for name in names:
        with contextlib.suppress(FileNotFoundError, PermissionError):  # not ours: left alone
            os.chmod(storage_dir / name, PRIVATE_MODE)


def write_atomically(path: Path, data: bytes, mode: int, group: Optional[int] = None) -> None:
    """Write to a temporary name, set mode (and group), then rename over `path`."""
    atomic_file.write_atomically(path, data, mode, group)
