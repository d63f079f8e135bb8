"""`local`: the embedded backend. Works on the storage directory itself, no node needed.

It uses the same layout as a node, so a node started later on the same directory serves
everything stored here.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Optional

from kachery_core.content.hashing import Progress
from kachery_core.content.uri import ContentUri
from kachery_core.errors import NotFoundError, StaleLinkError, UnsupportedOperation
from kachery_core.protocol.node_key import check_node_id
from kachery_core.settings.config import Config
from kachery_core.store.base import StoredObject
from kachery_core.store.local import LocalStorage

from .storage_backed import StorageBackedTransport


class LocalTransport(StorageBackedTransport):
    """Reads and writes `storage_dir` directly."""

    name = "local"
    unsupported_hint = "mutables and feeds need a node: start one with `kachery-daemon start`"
    stores_in_process = True
    """Stores are hashed here, by the code that writes them: no answer to check."""

    def __init__(
        self,
        storage: LocalStorage,
        expected_node_id: Optional[str] = None,
        expected_source: str = "",
        channel: Optional[str] = None,
    ) -> None:
        self.storage = storage
        self.channel = channel
        self._expected = expected_node_id
        self._expected_source = expected_source
        self._checked = False

    @classmethod
    def from_config(cls, config: Config) -> LocalTransport:
        storage = LocalStorage(
            config.storage_dir,
            config.temp_dir,
            config.keep_temp_files,
            config.fsync,
            config.max_cache_size,
            config.gc_grace_seconds,
        )
        return cls(
            storage, config.expected_node_id, config.source("expected_node_id"), config.channel
        )

    def check_node_id(self) -> None:
        """A storage directory owned by a node other than the expected one is refused."""
        if not self._checked:
            actual = self.storage.layout.read_node_id()
            check_node_id(
                self._expected,
                actual,
                f"storage directory {self.storage.root}",
                self._expected_source,
            )
            self._checked = True

    def store_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        self.check_node_id()
        return self.storage.store_file(Path(path), progress)

    def store_stream(self, stream: BinaryIO, progress: Optional[Progress] = None) -> StoredObject:
        self.check_node_id()
        return self.storage.store_stream(stream, progress=progress)

    def link_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        self.check_node_id()
        return self.storage.link_file(Path(path), progress)

    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        self.check_node_id()
        return super().load_file(uri, progress)

    # -- channels: only a node belongs to channels -----------------------------------

    def find_path(self, uri: ContentUri) -> Path:
        try:
            return super().find_path(uri)
        except StaleLinkError:
            raise
        except NotFoundError:
            if self.channel is None:
                raise
            raise self._needs_a_node(f"loading {uri} from channel {self.channel!r}") from None

    def check_channels(self, channel: str) -> None:
        raise self._needs_a_node(f"uploading to channel {channel!r}")

    def upload_to_channel(
        self, uri: ContentUri, channel: str, progress: Optional[Progress] = None
    ) -> None:
        raise self._needs_a_node(f"uploading to channel {channel!r}")

    def _needs_a_node(self, operation: str) -> UnsupportedOperation:
        return UnsupportedOperation(
            self.name,
            operation,
            "channels need a node: start one with `kachery-daemon start --config FILE` "
            "(FILE names its [channels.NAME]), and this client uses it",
        )
