"""`remote`: a node on another machine, over its HTTP API.

Chosen automatically when the daemon host names another machine, or when the node on
this machine keeps its storage directory from this user (a lab member outside its group,
with a token). Two setups:

- **Storage shared** (the lab setup): `KACHERY_STORAGE_DIR` is a mount of the node's
  storage directory and holds its `kachery-node-id`. Objects are read in place, exactly as
  the `http` backend does.
- **Storage not shared** (a laptop): bytes travel over the connection. Loads stream
  `/downloadFileData` into a local cache (`KACHERY_STORAGE_DIR` when set, else the per-user
  cache directory; the usual layout), resumably for files with a manifest, and an object
  appears there only once its SHA-1 matches. Stores stream the file to `/store`.

Across machines the rotating client-auth code is out of reach, so the client sends an
access token (`KACHERY_AUTH_TOKEN` or `auth_token_file`; made with `kachery-daemon token
create`) in the same header. Timeouts come from `connect_timeout` and `read_timeout`.

    >>> transport = RemoteDaemonTransport.from_config(resolve_config())   # doctest: +SKIP
    >>> transport.load_file(parse_uri("sha1://...?manifest=..."))          # doctest: +SKIP
    '/home/me/.cache/kachery/storage/sha1/94/3a/70/943a70...'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, List, Optional, Sequence, Set, Tuple

from kachery_core.content.hashing import Progress, hash_stream, writer_for
from kachery_core.content.manifest import Manifest
from kachery_core.content.uri import ContentUri
from kachery_core.errors import (
    IntegrityError,
    NotFoundError,
    TransportError,
    UnsupportedOperation,
)
from kachery_core.protocol.probe import UNREADABLE, ProbeAnswer, storage_reach
from kachery_core.protocol.wire import file_key
from kachery_core.settings.config import Config
from kachery_core.settings.paths import user_cache_dir
from kachery_core.store.assembly import has_some_chunks
from kachery_core.store.base import StoredObject
from kachery_core.store.local import LocalStorage
from kachery_core.store.resumable import ResumableDownload

from .http import HttpDaemonTransport
from .http_client import ResponseStream
from .node_session import storage_owner

if TYPE_CHECKING:
    from kachery_core.backend.batch import BatchReport


def default_cache_dir() -> Path:
    return user_cache_dir() / "storage"


class RemoteDaemonTransport(HttpDaemonTransport):
    name = "remote"
    no_node_hint = (
        "check KACHERY_DAEMON_HOST/KACHERY_DAEMON_PORT, that the node runs, and that this "
        "machine can reach it"
    )

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.shared = False
        self.batch_route: Optional[bool] = None
        """Whether the node has `/downloadFiles` (None: not asked yet)."""
        self._node_has: Set[str] = set()
        """Objects the node was asked to load through its channel, so it holds them."""

    @classmethod
    def from_config(cls, config: Config) -> RemoteDaemonTransport:
        return cls(config)

    def _attach_storage(self, answer: ProbeAnswer) -> LocalStorage:
        configured = self._config.storage_dir
        self.shared = storage_owner(configured) == answer.node_id
        if self.shared:
            root = configured
        else:
            # KACHERY_STORAGE_DIR is the cache, unless it names a directory this user cannot
            # read (the node's own, on this machine): then the user's own cache is.
            explicit = self._config.is_set("storage_dir")
            if explicit and storage_reach(configured, answer.node_id).problem == UNREADABLE:
                explicit = False
            root = configured if explicit else default_cache_dir()
        return LocalStorage(
            root,
            self._config.temp_dir,
            self._config.keep_temp_files,
            self._config.fsync,
            self._config.max_cache_size,
            self._config.gc_grace_seconds,
        )

    @property
    def node_reads_local_paths(self) -> bool:
        return self.shared and super().node_reads_local_paths

    def lazy_storages(self) -> Tuple[Optional[LocalStorage], Optional[LocalStorage]]:
        """Shared storage is read in place; otherwise chunks come over the connection
        (`open_range`) into the client's cache."""
        self._connect()
        if self.shared:
            return self.storage, None
        return None, self.storage

    def describe_location(self) -> str:
        where = "shared storage" if self.shared else "cache"
        return f"the node at {self.base_url} ({where} {self.storage.root})"

    def _auth_code_file(self) -> Path:
        if self.shared or self._config.auth_code_file:
            return super()._auth_code_file()
        raise TransportError(
            f"the node at {self.base_url} needs an access token",
            "ask its admin for one (`kachery-daemon token create --label YOU`), then set "
            "KACHERY_AUTH_TOKEN or auth_token_file",
        )

    # -- files -----------------------------------------------------------------------

    def link_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        self._connect()
        if self.shared:
            return super().link_file(path, progress)
        raise UnsupportedOperation(
            self.name,
            "linking files when the node's storage is not mounted here",
            "the node cannot see files on this machine; use store-file, or mount the node's "
            "storage and point KACHERY_STORAGE_DIR at it",
        )

    def load_files(
        self,
        uris: Sequence[ContentUri],
        progress: Optional[BatchReport] = None,
        sizes: Optional[Sequence[int]] = None,
    ) -> List[str]:
        """Several objects at once: small ones in batch requests (see batch_download.py)."""
        self._connect()
        from .batch_download import load_files

        return load_files(self, uris, progress, sizes)

    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        """With a channel and storage not shared, the node fetches the object through the
        channel, and only the range asked for crosses the connection (a lazy read of one
        chunk does not download the whole file here)."""
        self._connect()
        if self.shared or not self.channel or self.storage.find(uri.sha1) is not None:
            return super().open_range(uri, start, end)
        if uri.sha1 not in self._node_has:
            self._node_loads(uri, None)
            self._node_has.add(uri.sha1)
        return self._range_from_node(uri, start, end)

    def _load_through_node(self, uri: ContentUri, progress: Optional[Progress]) -> str:
        if self.shared:
            return super()._load_through_node(uri, progress)
        if self.channel:  # the node fetches it from the channel, then we fetch it from the node
            self._node_loads(uri, progress)
        return str(self._download(uri, progress))

    def _download(self, uri: ContentUri, progress: Optional[Progress]) -> Path:
        manifest = self._manifest(uri)
        if manifest is not None and has_some_chunks(self.storage, manifest):
            return self._download_missing_chunks(uri, manifest, progress)
        with ResumableDownload(self.storage, uri.sha1, manifest) as download:
            done = download.done_elsewhere()
            if done is not None:
                return done
            offset = download.verified_size()
            if manifest is None or offset < manifest.size:
                doc = {"fileKey": file_key(uri), "startByte": offset}
                response = self.http.request(
                    "POST", "/downloadFileData", json_body=doc, stream=True, what="download"
                )
                response.raw.decode_content = True
                assert download.file is not None
                shifted = None if progress is None else (lambda n: progress(offset + n))
                what = f"the download of {uri}"
                with ResponseStream(response, self.base_url, what, self.timeout[1]) as body:
                    hash_stream(
                        body.readinto,
                        writer_for(download.file),
                        progress=shifted,
                        manifest=False,
                        resume=download.whole,
                    )
            try:
                return download.commit()
            except IntegrityError as exc:
                raise IntegrityError(
                    f"{uri} from the {self.name} backend ({self.base_url}): {exc.message}",
                    exc.hint,
                ) from None

    def _download_missing_chunks(
        self, uri: ContentUri, manifest: Manifest, progress: Optional[Progress]
    ) -> Path:
        """Some chunks are cached already (a lazy read left them): fetch only the others,
        each checked against the manifest as it is stored, then join them (checked again
        whole)."""
        from kachery_core.store.assembly import assemble_fetching_missing

        def fetch(start: int, end: int) -> BinaryIO:
            return self._range_from_node(uri, start, end)

        path = assemble_fetching_missing(self.storage, uri, manifest, fetch, progress)
        if path is None:
            raise TransportError(
                f"{uri}: its chunks vanished from {self.storage.root}", "try again"
            )
        return path

    def _manifest(self, uri: ContentUri) -> Optional[Manifest]:
        """The URI's manifest (fetched once and cached), or None to download without one."""
        if uri.manifest_sha1 is None:
            return None
        if not self.storage.has(uri.manifest_sha1):
            doc = {"fileKey": {"sha1": uri.manifest_sha1}}
            try:
                response = self.http.request(
                    "POST", "/downloadFileData", json_body=doc, what="manifest download"
                )
            except NotFoundError:
                return None  # the node has the file but not its manifest: no resuming
            self.storage.store_bytes(response.content, expected_sha1=uri.manifest_sha1)
        manifest = self.storage.load_manifest(uri.manifest_sha1)
        return manifest if manifest.sha1 == uri.sha1 else None
