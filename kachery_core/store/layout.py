"""The on-disk layout of a kachery storage directory, shared by node and client.

    <dir>/sha1/<h[0:2]>/<h[2:4]>/<h[4:6]>/<h>        an object (its bytes)
    <dir>/sha1/<h[0:2]>/<h[2:4]>/<h[4:6]>/<h>.link   a link record (see `LinkRecord`)
    <dir>/kachery-node-id                            the owning node's ID
    <dir>/client-auth                                the node's current client auth code
    <dir>/tmp/                                       staging files (default temp dir)
    <dir>/kachery-index.sqlite (-wal, -shm)          origins and recency (`index.py`)
    <dir>/kachery-gc.lock                            one gc at a time (`collect.py`)

Paths are only ever built from validated hashes, never from labels or user text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from kachery_core.content.uri import check_sha1

NODE_ID_FILE = "kachery-node-id"
CLIENT_AUTH_FILE = "client-auth"
TEMP_DIR_NAME = "tmp"
LINK_SUFFIX = ".link"


class StorageLayout:
    """Where things live inside one storage directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def object_path(self, sha1: str) -> Path:
        h = check_sha1(sha1)
        return self.root / "sha1" / h[0:2] / h[2:4] / h[4:6] / h

    def link_path(self, sha1: str) -> Path:
        path = self.object_path(sha1)
        return path.with_name(path.name + LINK_SUFFIX)

    @property
    def node_id_path(self) -> Path:
        return self.root / NODE_ID_FILE

    @property
    def client_auth_path(self) -> Path:
        return self.root / CLIENT_AUTH_FILE

    @property
    def default_temp_dir(self) -> Path:
        return self.root / TEMP_DIR_NAME

    def read_node_id(self) -> Optional[str]:
        """The ID of the node that owns this directory, or None if no node ever did."""
        try:
            return self.node_id_path.read_text().strip() or None
        except FileNotFoundError:
            return None
