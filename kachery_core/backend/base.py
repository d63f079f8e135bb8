"""`Backend` (earlier name: `DaemonTransport`): what every backend offers, whatever carries the bytes.

A client talks to exactly one node; a backend is how it does so (or, for the embedded
`local` and `offline` backends, how it stands in for one). The interface is small and
uses plain types: paths as `str`, URIs as `ContentUri`, byte streams as binary file
objects, JSON values as Python objects.

    >>> from kachery_core.settings.config import resolve_config
    >>> from kachery_transports.local import LocalTransport
    >>> backend = LocalTransport.from_config(resolve_config())
    >>> stored = backend.store_file("data.bin")               # doctest: +SKIP
    >>> backend.load_file(stored.uri("data.bin"))             # doctest: +SKIP
    '/home/me/kachery-storage/sha1/94/3a/70/943a70...'

What a backend offers beyond the methods is declared here too, with defaults a backend
overrides: `parallel_transfers` (how many files a batch moves at once), `stores_in_process`
(whether its stores are hashed by this very process), `load_files` and `store_files`
(batches; by default one object at a time on `parallel_transfers` threads) and `local_store()` (the
storage directory on this machine it reads objects from, which `verify` checks).

A backend that cannot do something (store while offline, feeds without a node) need not
override that method: the default raises `UnsupportedOperation`, which the CLI shows as
a one-line error naming the backend and, through `unsupported_hint`, what to do.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Dict, List, Optional, Sequence, Tuple

from kachery_core.content.hashing import Progress
from kachery_core.content.uri import ContentUri
from kachery_core.errors import UnsupportedOperation
from kachery_core.records import dataclass, field
from kachery_core.store.base import StoredObject

from .batch import BatchProgress, BatchReport, run_batch

if TYPE_CHECKING:
    from kachery_core.settings.config import Config
    from kachery_core.store.local import LocalStorage

JSON = Any
"""A value that `json.dumps` accepts."""


@dataclass(frozen=True)
class NodeInfo:
    """Who is at the other end. `node_id` is None where no node is involved."""

    backend: str
    node_id: Optional[str]
    storage_dir: Optional[str]
    daemon_version: Optional[str] = None
    address: Optional[str] = None
    details: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SubfeedWatch:
    feed_id: str
    subfeed_hash: str
    position: int
    channel_name: Optional[str] = None


class Backend(ABC):
    """One way of reaching a node. Subclasses set `name` and implement the abstract methods."""

    name: ClassVar[str] = "unnamed"
    unsupported_hint: ClassVar[Optional[str]] = None
    """Appended to every `UnsupportedOperation` this backend raises."""
    channel: Optional[str] = None
    """The channel a load asks the node to fetch from when it lacks the file (`config.channel`).

    A backend that supports channels sets it from its config; `Client(channel="x")` and
    `--channel x` work by setting that config value explicitly.
    """
    parallel_transfers: int = 1
    """Files a batch (`store-file -r`, `load-file -r`) moves at once, on threads sharing this
    one backend object: above 1 only when its methods are safe to call from several threads."""
    stores_in_process: bool = False
    """True when this process hashes a store's bytes as it writes them (the embedded `local`
    backend): the client then takes the answer's hash as it is. Otherwise the client hashes
    the bytes it sends itself and refuses an answer naming another hash."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: Config) -> Backend:
        """Build the backend from resolved settings. Do no network I/O here."""

    # -- node ---------------------------------------------------------------------

    @abstractmethod
    def node_info(self) -> NodeInfo:
        """Describe the node (or storage) this backend reaches; may contact it."""

    # -- files --------------------------------------------------------------------

    @abstractmethod
    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        """Make the object available locally; return the path of a file holding its bytes.

        Raises `NotFoundError` naming the URI and where it looked.
        """

    def load_files(
        self,
        uris: Sequence[ContentUri],
        progress: Optional[BatchReport] = None,
        sizes: Optional[Sequence[int]] = None,
    ) -> List[str]:
        """Make several objects available locally; their paths, in the order given.

        The default runs `load_file` on `parallel_transfers` threads. A backend that can
        move many objects in one request overrides it; `sizes` (what a directory says of
        each object, when known) lets it check a size before reading the bytes.
        """
        counter = BatchProgress(progress)

        def one(uri: ContentUri) -> str:
            file_progress = counter.for_file()
            path = self.load_file(uri, file_progress)
            file_progress.done(os.stat(path).st_size)
            return path

        return run_batch(uris, one, max(1, self.parallel_transfers))

    @abstractmethod
    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        """A readable binary stream of bytes [start, end) of the object."""

    def store_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        """Store a copy of a local file."""
        raise self.unsupported("storing files")

    def store_files(
        self, paths: Sequence[str], progress: Optional[BatchProgress] = None
    ) -> List[StoredObject]:
        """Store copies of several small local files; their objects, in the order given.

        The default runs `store_file` on `parallel_transfers` threads. A backend that can
        send many small files in one request overrides it. The caller checks every answer
        against the file's own hash (`kachery_client.verified_store`).
        """
        counter = progress if progress is not None else BatchProgress(None)

        def one(path: str) -> StoredObject:
            file_progress = counter.for_file()
            stored = self.store_file(path, file_progress)
            file_progress.done(stored.size)
            return stored

        return run_batch(paths, one, max(1, self.parallel_transfers))

    def store_stream(self, stream: BinaryIO, progress: Optional[Progress] = None) -> StoredObject:
        """Store the bytes read from `stream` until its end."""
        raise self.unsupported("storing data")

    def link_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        """Make a local file available by reference, without copying it."""
        raise self.unsupported("linking files")

    def local_store(self) -> Optional[LocalStorage]:
        """The storage directory on this machine that loads read objects from (the one
        `kachery-client verify` checks), or None when there is none. May contact the node
        (a node-backed backend learns its directory on connecting)."""
        return None

    # -- channels -----------------------------------------------------------------

    def check_channels(self, channel: str) -> None:
        """Raise now if this backend cannot use channels, before a store does any work."""
        raise self.unsupported("channels")

    def upload_to_channel(
        self, uri: ContentUri, channel: str, progress: Optional[Progress] = None
    ) -> None:
        """Have the node upload a file it holds (with its manifest) to its channel `channel`."""
        raise self.unsupported("channels")

    # -- mutables -----------------------------------------------------------------

    def mutable_get(self, key: JSON) -> Tuple[bool, JSON]:
        """Return (found, value) for a mutable key."""
        raise self.unsupported("mutables (get/set/delete)")

    def mutable_set(self, key: JSON, value: JSON, update: bool = True) -> None:
        raise self.unsupported("mutables (get/set/delete)")

    def mutable_delete(self, key: JSON) -> None:
        raise self.unsupported("mutables (get/set/delete)")

    # -- feeds --------------------------------------------------------------------

    def create_feed(self, feed_name: Optional[str] = None) -> str:
        """Create a feed and return its ID."""
        raise self.unsupported("feeds")

    def get_feed_id(self, feed_name: str) -> Optional[str]:
        raise self.unsupported("feeds")

    def delete_feed(self, feed_id: str) -> None:
        raise self.unsupported("feeds")

    def append_messages(self, feed_id: str, subfeed_hash: str, messages: List[JSON]) -> None:
        raise self.unsupported("feeds")

    def get_num_messages(self, feed_id: str, subfeed_hash: str) -> int:
        raise self.unsupported("feeds")

    def watch_for_new_messages(
        self,
        watches: Dict[str, SubfeedWatch],
        wait_msec: int,
        max_num_messages: int = 0,
    ) -> Dict[str, List[JSON]]:
        """Wait up to `wait_msec` for new messages on any watch; return them by watch name.

        Each watch gets the messages after its position, in order, but perhaps not all of
        them (a node bounds one answer): move each position on by what came and ask again.
        """
        raise self.unsupported("feeds")

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - optional for subclasses
        """Release connections and files. Safe to call more than once."""

    def unsupported(self, operation: str) -> UnsupportedOperation:
        return UnsupportedOperation(self.name, operation, self.unsupported_hint)


DaemonTransport = Backend
"""The interface's earlier name, kept so that plugins written against it keep working."""
