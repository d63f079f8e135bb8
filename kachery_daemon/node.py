"""The node itself, whichever protocol reaches it: storage, credentials, mutables, feeds,
channels and counters behind plain methods.

The HTTP API (`http_api`, `feed_routes`, `channels/routes`) and the gRPC API
(`grpc_service`) are adapters over one `Node`: each parses its requests, calls a method
here, and encodes the answer or the failure in its own way. So a rule (the size check of an
upload, the unchanged-file check of a link, how a chunk is cut or a file assembled, the
signed probe) is written once and holds on every API. Failures are `KacheryError`s
(`InvalidInputError` for bad input, `NotFoundError` for a miss, `IntegrityError` for bytes
that do not match their hash); the adapters turn them into status codes and wire error types.

Blocking work (disk, hashing, SQLite) runs on worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import sqlite3
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from kachery_core import __version__
from kachery_core.content.uri import ContentUri
from kachery_core.content.uri import format_uri as wire_uri
from kachery_core.errors import InvalidInputError, KacheryError, NotFoundError
from kachery_core.protocol import wire
from kachery_core.store.assembly import find_or_assemble
from kachery_core.store.base import FileRange, StoredObject
from kachery_core.store.local import LocalStorage

from . import activity, path_policy
from .auth import Authorizer, RotatingAuthCode
from .feed_watch import Appended, Watch, wait_for_messages
from .feeds import FeedStore
from .mutables import MutableStore
from .node_channels import KEEPALIVE_SECONDS as KEEPALIVE_SECONDS  # still importable here
from .node_channels import NO_CHANNELS_HINT as NO_CHANNELS_HINT
from .node_channels import PROGRESS_SECONDS as PROGRESS_SECONDS
from .node_channels import ChannelOperations
from .node_channels import Report as Report
from .node_files import NodeIdentity
from .path_policy import PathCheck, PathPolicy
from .tokens import TokenStore

if TYPE_CHECKING:
    from .batch_send import BatchItem
    from .batch_store import Item
    from .channels.service import ChannelService

T = TypeVar("T")
WRITE_SIZE = 4 << 20
"""Uploaded pieces are gathered to at least this size before each trip to a worker thread."""


class NoSpaceError(KacheryError):
    """The node's disk is full: answered 507 (gRPC RESOURCE_EXHAUSTED), error type "error".

    Whatever the request had begun to write is removed (staging file, SQLite transaction).
    """


@dataclass(frozen=True)
class ProbeAnswer:
    node_id: str
    daemon_version: str
    storage_dir: str
    label: str
    signature: Optional[str]
    """The node key's signature of `wire.probe_message(nonce)`, when a nonce was given."""


@dataclass
class Node(ChannelOperations):
    """One storage directory served to clients; the APIs call its methods (those for
    channels are in node_channels.py)."""

    storage: LocalStorage
    identity: NodeIdentity
    auth: RotatingAuthCode
    mutables: MutableStore
    feeds: FeedStore
    label: str = ""
    started: float = field(default_factory=time.time)
    counters: Dict[str, int] = field(default_factory=dict)
    channels: Optional[ChannelService] = None
    """The channels of its config file (see channels/), None when it has none."""
    config_file: Optional[Path] = None
    """The node config file, never read for a client (see path_policy)."""
    path_identity: str = path_policy.AUTO
    """Whom paths are read for (`--path-identity`, see path_policy.PathIdentity)."""
    addresses: List[str] = field(default_factory=list)
    """Where it listens (`http://host:port`, ...), set once its servers are up."""
    activity: activity.ActivityLog = field(default_factory=activity.ActivityLog)
    """Its recent stores, loads, channel transfers and refusals (for the web pages)."""

    def __post_init__(self) -> None:
        self.tokens = TokenStore(self.storage.root)
        self.authorizer = Authorizer([self.auth.scope_of, self.tokens.scope_of])
        self.appended = Appended()  # wakes feed watches, whichever API appended
        self._providers: List[asyncio.Future[None]] = []
        private = [self.identity.key_path, self.tokens.path]
        if self.config_file is not None:
            private.append(self.config_file)
        identity = path_policy.path_identity(self.path_identity, self.auth.path, self.auth.group)
        self.path_policy = PathPolicy(self.storage.root, tuple(private), identity)

    # -- credentials, identity, counters --------------------------------------------

    def authorize(self, credential: Optional[str], operation: Optional[str]) -> Optional[str]:
        """None when `credential` (auth code or access token) may do `operation`, else the
        one-line reason to refuse. `operation` is a key of `scopes.OPERATIONS` (the one
        table of what each needs), or None for a request that matches no route."""
        try:
            reason = self.authorizer.reason_to_refuse(credential, operation)
        except Exception as exc:  # a bug in a check must refuse cleanly, never answer 500
            report_unexpected(exc, "checking a credential")
            reason = (
                f"the node cannot check credentials ({type(exc).__name__} reading its token "
                "file); its operator should fix or recreate the token file"
            )
        if reason is not None:
            self.activity.add(activity.REFUSED, operation or "no such route", None, reason)
        return reason

    def probe(self, nonce: Optional[str] = None) -> ProbeAnswer:
        signature = None
        if nonce is not None:
            message = wire.probe_message(wire.check_probe_nonce(nonce))
            signature = self.identity.sign(message)
        return ProbeAnswer(
            self.identity.node_id, __version__, str(self.storage.root), self.label, signature
        )

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def stats(self) -> Dict[str, int]:
        return dict(
            self.counters,
            uptimeSeconds=int(time.time() - self.started),
            watchedSubfeeds=self.appended.watched,
        )

    # -- storing --------------------------------------------------------------------

    async def store_upload(
        self,
        pieces: AsyncIterable[Union[bytes, bytearray]],
        declared_size: Optional[int] = None,
        declared_by: str = "the request",
    ) -> StoredObject:
        """Hash and write an upload as it arrives; it appears only once whole and named.

        Bytes go to a staging file (see `LocalStorage.object_writer`) and are renamed into
        place by their hash. A body whose length differs from `declared_size` is refused,
        and a failed or cancelled upload leaves nothing behind.
        """
        with self._disk_full_is_an_answer():
            return await self._store_upload(pieces, declared_size, declared_by)

    async def _store_upload(
        self,
        pieces: AsyncIterable[Union[bytes, bytearray]],
        declared_size: Optional[int],
        declared_by: str,
    ) -> StoredObject:
        from .upload_blocks import blocks_of

        writer = self.storage.object_writer()
        # One block is hashed and written on a worker thread while the next one fills.
        writing: Optional[asyncio.Future[None]] = None
        try:
            async for block in blocks_of(pieces, WRITE_SIZE, declared_size):
                if writing is not None:
                    await writing
                writing = _start(writer.write, block)
            if writing is not None:
                await writing
                writing = None
            if declared_size is not None and writer.size != declared_size:
                raise InvalidInputError(
                    f"body had {writer.size} bytes but {declared_by} said {declared_size}"
                )
            stored = await _run(writer.commit)
        finally:
            if writing is not None:  # a failed or cancelled upload: let the write end first
                await asyncio.gather(writing, return_exceptions=True)
            writer.abort()  # nothing if committed; otherwise the staging file goes
        self.count("storedBytes", stored.size)
        self.count("storeRequests")
        self.activity.add(activity.STORE, _uri_of(stored), stored.size)
        return stored

    async def store_file(self, path: str) -> StoredObject:
        """Copy in a file of this machine that the client named by its path.

        Only a file the client could read itself, never one of the node's own
        (`path_policy`); it is read through the descriptor that was checked.
        """
        with self._disk_full_is_an_answer():
            stored = await _run(self.store_client_file, path)
        self.count("storeRequests")
        self.activity.add(activity.STORE, _uri_of(stored), stored.size, "by path")
        return stored

    def store_client_file(
        self, text: str, limit: Optional[int] = None, check: Optional[PathCheck] = None
    ) -> StoredObject:
        """`store_file`'s work (blocking); a file over `limit` bytes is refused unread.
        `check`: the path rule of the request this file is one of (`PathPolicy.checker`)."""
        opened = (check or self.path_policy.checker()).open(text)
        try:  # checked before anything is kept: a file that changed leaves nothing
            if limit is not None and opened.stat.st_size > limit:
                raise InvalidInputError(
                    f"{text[:200]!r} has {opened.stat.st_size} bytes, over the {limit} a "
                    "batch store takes",
                    "store it alone (/storeFile)",
                )
            with io.FileIO(opened.fd, "rb", closefd=False) as source:
                return self.storage.store_open_file(source, opened.stat, str(opened.path))
        finally:
            opened.close()

    async def store_objects(self, objects: AsyncIterator[Tuple[str, bytes]]) -> List[Item]:
        """Small objects named by their SHA-1 (a batch store): each kept only if it hashes
        to its name, a slice at a time (see batch_store.py)."""
        from .batch_store import store_objects

        with self._disk_full_is_an_answer():
            return await store_objects(self, objects)

    async def store_local_files(self, paths: Sequence[str]) -> List[Item]:
        """Several small files of this machine, as `store_file` stores one (a batch)."""
        from .batch_store import store_local_files

        with self._disk_full_is_an_answer():
            return await _run(store_local_files, self, paths)

    async def link_unchanged(self, path: str, size: int, mtime: float) -> StoredObject:
        """Link `path` if it still has the size and mtime the client saw (and `path_policy`
        lets the node read it for the client)."""
        with self._disk_full_is_an_answer():
            linked = await _run(self._link_client_file, path, size, mtime)
        self.activity.add(activity.LINK, _uri_of(linked), linked.size)
        return linked

    def _link_client_file(self, text: str, size: int, mtime: float) -> StoredObject:
        opened = self.path_policy.open(text, "path")
        try:
            st = opened.stat
            if st.st_size != size or st.st_mtime != mtime:
                raise InvalidInputError(
                    f"{text[:200]!r} has changed since the client looked at it (size/mtime differ)"
                )
            with io.FileIO(opened.fd, "rb", closefd=False) as source:
                return self.storage.link_open_file(source, st, opened.path)
        finally:
            opened.close()

    @contextlib.contextmanager
    def _disk_full_is_an_answer(self) -> Iterator[None]:
        """A full disk (ENOSPC, SQLite's "disk is full") becomes `NoSpaceError`, not a bug."""
        try:
            yield
        except (OSError, sqlite3.Error) as exc:
            if not _is_disk_full(exc):
                raise
            raise NoSpaceError(
                f"no space left on the node's storage at {self.storage.root}",
                "free space there (or give the node a larger disk); nothing was kept",
            ) from None

    # -- reading --------------------------------------------------------------------

    async def find(self, uri: ContentUri) -> Path:
        """The path of `uri`'s bytes here, cut or assembled from pieces held if need be.

        `NotFoundError` when neither it nor its pieces are here; `IntegrityError` when a
        piece is damaged (its bytes do not hash to what they should).
        """
        with self._disk_full_is_an_answer():
            path = await _run(find_or_assemble, self.storage, uri)
        if path is not None and not _inside(path, self.storage.root):
            await _run(self._check_link_target, path)
        if path is None:
            raise NotFoundError(
                f"{uri} not found in {self.storage.root} (local backend)",
                "store it there first, or use a node that has it",
            )
        return path

    def _check_link_target(self, path: Path) -> None:
        """A linked file is read by its path: it must still be one the node may read for a
        client (it may have been swapped for a symlink to a private file since the link)."""
        self.path_policy.open(str(path), "the linked file").close()

    async def load(
        self,
        uri: ContentUri,
        channel: Optional[str] = None,
        channel_timeout: Optional[object] = None,
        report: Optional[Report] = None,
    ) -> Path:
        """`find`, and on a miss fetch it through `channel` when one is named."""
        try:
            found = await self.find(uri)
            self.activity.add(activity.LOAD, str(uri))
            return found
        except NotFoundError:
            if channel is None:
                raise
        return await self.load_from_channel(uri, channel, channel_timeout, report)

    async def open_range(
        self, uri: ContentUri, start: int = 0, end: Optional[int] = None
    ) -> FileRange:
        """Bytes [start, end) of the object, opened for reading (the caller closes it)."""
        await self.find(uri)
        opened = await _run(self.storage.open_range, uri.sha1, start, end)
        if start == 0:  # a read from the start is a load; later ranges continue it
            self.activity.add(activity.LOAD, str(uri), opened.length, "bytes sent")
        return opened

    def read_batch(self, sha1s: Sequence[str]) -> AsyncIterator[List[BatchItem]]:
        """Small objects for one batch download, in order, a slice at a time: each one's
        bytes, or why they are not sent (see batch_send.py for the bounds)."""
        from .batch_send import read_batch

        return read_batch(self, sha1s)

    # -- mutables -------------------------------------------------------------------

    async def get_mutable(self, key: Any) -> Tuple[bool, Any]:
        return await _run(self.mutables.get, key)

    async def set_mutable(self, key: Any, value: Any, update: bool = True) -> bool:
        with self._disk_full_is_an_answer():
            return await _run(self.mutables.set, key, value, update)

    async def delete_mutable(self, key: Any) -> bool:
        with self._disk_full_is_an_answer():
            return await _run(self.mutables.delete, key)

    # -- feeds ----------------------------------------------------------------------

    async def create_feed(self, name: Optional[str] = None) -> str:
        with self._disk_full_is_an_answer():
            return await _run(self.feeds.create_feed, name)

    async def get_feed_id(self, name: str) -> Optional[str]:
        return await _run(self.feeds.get_feed_id, name)

    async def delete_feed(self, feed_id: str) -> None:
        await _run(self.feeds.delete_feed, feed_id)

    async def feed_is_writeable(self, feed_id: str) -> bool:
        return await _run(self.feeds.is_writeable, feed_id)

    async def append_messages(self, feed_id: str, subfeed: str, messages: List[Any]) -> None:
        """Sign and append, then wake every watch of that subfeed."""
        with self._disk_full_is_an_answer():
            await _run(self.feeds.append_messages, feed_id, subfeed, messages)
        self.appended.notify(feed_id, subfeed)

    async def num_messages(self, feed_id: str, subfeed: str) -> int:
        return await _run(self.feeds.num_messages, feed_id, subfeed)

    async def watch(
        self, watches: List[Watch], wait_msec: float, limit: int = 0, signed: bool = False
    ) -> Dict[str, List[str]]:
        """The JSON texts of messages past each watch's position, within one answer's
        budget (`feed_watch`), waiting up to `wait_msec` for at least one."""
        return await wait_for_messages(self.feeds, self.appended, watches, wait_msec, limit, signed)


def _uri_of(stored: StoredObject) -> str:
    return wire_uri(stored.sha1, manifest_sha1=stored.manifest_sha1)


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "disk is full" in str(exc) or getattr(exc, "sqlite_errorcode", None) == 13


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


async def _run(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work (disk, hashing, SQLite) on a worker thread."""
    return await _start(fn, *args)


def _start(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`_run` without waiting: the work has started on a worker thread when this returns."""
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


def report_unexpected(exc: BaseException, where: str) -> str:
    """Log a failure that is a bug, traceback and all, to the node's stderr; return the
    one line a client gets instead (never a traceback)."""
    print(f"kachery-daemon: error in {where}:", file=sys.stderr)
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    return f"internal error ({type(exc).__name__}); see the node's log"
