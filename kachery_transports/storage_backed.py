"""What the `local` and `offline` backends share: loading from a `LocalStorage`.

Beyond a plain lookup, a load can be satisfied from pieces already present: a chunk
(`?chunkOf=`) cut from its whole file, or a whole file (`?manifest=`) assembled from its
chunks. Either way the bytes are hash-checked before the object appears; the rule is
`kachery_core.store.assembly`, shared with the node.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Optional, Tuple

from kachery_core.backend.base import Backend, NodeInfo
from kachery_core.content.hashing import Progress
from kachery_core.content.uri import ContentUri
from kachery_core.errors import NotFoundError
from kachery_core.store.assembly import find_or_assemble
from kachery_core.store.local import LocalStorage


class StorageBackedTransport(Backend):
    """A transport whose objects are files in a `LocalStorage` on this machine."""

    storage: LocalStorage

    def local_store(self) -> LocalStorage:
        return self.storage

    def describe_location(self) -> str:
        return f"{self.storage.root} ({self.name} backend)"

    def node_info(self) -> NodeInfo:
        return NodeInfo(self.name, self.storage.layout.read_node_id(), str(self.storage.root))

    def find_path(self, uri: ContentUri) -> Path:
        """The path of the object's bytes, assembling it from parts present if needed."""
        path = find_or_assemble(self.storage, uri)
        if path is None:
            raise NotFoundError(
                f"{uri} not found in {self.describe_location()}", self.not_found_hint()
            )
        return path

    def not_found_hint(self) -> str:
        return "store it there first, or use a node that has it"

    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        return str(self.find_path(uri))

    def lazy_storages(self) -> Tuple[Optional[LocalStorage], Optional[LocalStorage]]:
        """For lazy reads (kachery_client/lazy): objects are read in place in the storage;
        what is missing is loaded whole (`load_file`), never cached beside it by chunk."""
        return self.storage, None

    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        self.find_path(uri)
        return self.storage.open_range(uri.sha1, start, end)  # type: ignore[return-value]
