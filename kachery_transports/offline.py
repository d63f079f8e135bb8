"""`offline`: read-only access to a storage directory, contacting no node.

Selected when `KACHERY_OFFLINE_STORAGE_DIR` is set. Loads come only from that directory
(which acts as a local cache); storing, linking, mutables and feeds are refused with a
message that names offline mode and the variable.
"""

from __future__ import annotations

from kachery_core.errors import ConfigError
from kachery_core.settings.config import Config
from kachery_core.store.local import LocalStorage

from .storage_backed import StorageBackedTransport

OFFLINE_TEMP_DIR_NAME = "kachery-tmp"


class OfflineTransport(StorageBackedTransport):
    """Loads from the offline storage directory only."""

    name = "offline"
    unsupported_hint = (
        "the client is in offline mode because KACHERY_OFFLINE_STORAGE_DIR is set; "
        "unset it to use a node or the embedded storage"
    )

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage

    @classmethod
    def from_config(cls, config: Config) -> OfflineTransport:
        root = config.offline_storage_dir
        if root is None:
            raise ConfigError(
                "the offline backend needs KACHERY_OFFLINE_STORAGE_DIR",
                "set it to the directory to read files from",
            )
        temp_dir = config.temp_dir or root / OFFLINE_TEMP_DIR_NAME
        return cls(
            LocalStorage(
                root,
                temp_dir,
                config.keep_temp_files,
                config.fsync,
                grace_period=config.gc_grace_seconds,
            )
        )

    def not_found_hint(self) -> str:
        if not self.storage.root.is_dir():
            return "that directory does not exist: check KACHERY_OFFLINE_STORAGE_DIR"
        return "offline mode reads only that directory (KACHERY_OFFLINE_STORAGE_DIR)"
