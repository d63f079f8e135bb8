"""The files a node keeps in its storage directory, beside the objects.

kachery-node-id         the node ID (hex Ed25519 public key), no newline
kachery-node-key.pem    the node's private key when none was given (mode 0600)
client-auth             the current client auth code (mode 0640, see auth.py)
kachery-daemon.json     pid, host and port of the running node (for info and stop)
kachery-daemon.lock     held (fcntl) while a node runs: one node per directory
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

from kachery_core import atomic_file
from kachery_core.errors import ConfigError
from kachery_core.layout import StorageLayout
from kachery_core.node_key import generate_key_file, load_key_file, node_id_of

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE = "kachery-node-key.pem"
STATE_FILE = "kachery-daemon.json"
LOCK_FILE = "kachery-daemon.lock"


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

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
    write_atomically(storage_dir / STATE_FILE, json.dumps(doc).encode(), 0o644)


def read_state(storage_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        doc = json.loads((storage_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def clear_state(storage_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(storage_dir / STATE_FILE)


def write_atomically(path: Path, data: bytes, mode: int, group: Optional[int] = None) -> None:
    """Write to a temporary name, set mode (and group), then rename over `path`."""
    atomic_file.write_atomically(path, data, mode, group)
