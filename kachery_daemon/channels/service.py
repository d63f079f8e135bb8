"""A node's channels: load from one, upload to one, and ask one for files nobody uploaded.

Loading `sha1` through channel C: if the bucket has the object, download it (verified,
see `transfer`). If not, and this node may request (`request = true`), write
`<prefix>requests/<sha1>` and poll for the object until `timeout`; the channel's providers
poll the requests and upload what they hold. After a successful load the request is
deleted. An object whose bytes do not match its hash is refused (nothing is stored) and the
request is (re)written with the refused ETag, so that a provider uploads a good copy over it.
A chunk (`?chunkOf=`) is also found as a byte range of its whole object in the bucket,
and its request names the whole, so a provider holding only the whole file cuts the chunk.
The node remembers that ETag for its lifetime: while the bucket still holds it, a later
load does not download it again but waits (up to its timeout) for a copy with a new ETag;
a node that may not request fails at once, saying the copy is corrupt.

Work runs on the service's own threads, so long waits for a provider never starve the
node's other work; `TransferState` is how the HTTP side sees progress and cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from kachery_core.content.uri import ContentUri
from kachery_core.errors import (
    ConfigError,
    IntegrityError,
    InvalidInputError,
    KacheryError,
    NotFoundError,
)
from kachery_core.store.local import LocalStorage

from .bucket import ChannelBucket
from .config import NodeConfig
from .housekeeping import (
    JOURNAL_NAME,
    REQUEST_RENEW_SECONDS,
    UploadJournal,
    abort_stale_uploads,
    expire_requests,
    sweep_downloads,
)
from .transfer import Cancelled, CorruptObject, Count, RefusedCopy, Transfer

DEFAULT_TIMEOUT = 60.0
"""Seconds a load waits for a provider, unless the client says otherwise (`channel_timeout`)."""
MAX_WAIT_POLL = 1.0


class UnknownChannel(InvalidInputError):
    """The client named a channel this node does not belong to."""


class ChannelTimeout(NotFoundError):
    """Nobody provided the requested file in time."""


@dataclass(eq=False)  # kept in a set: identity, not value
class TransferState:
    """Progress of one transfer, written by its thread and read by the HTTP handler."""

    loaded: int = 0
    total: int = 0
    stage: str = "starting"
    cancelled: threading.Event = field(default_factory=threading.Event)

    def progress(self, loaded: int, total: int) -> None:
        self.loaded, self.total = loaded, total


class ChannelService:
    def __init__(self, config: NodeConfig, storage: LocalStorage, node_id: str) -> None:
        self.config = config
        self.storage = storage
        self.node_id = node_id
        self.journal = UploadJournal(storage.root / JOURNAL_NAME)
        self.buckets = {name: ChannelBucket(c, self.journal) for name, c in config.channels.items()}
        self.executor = ThreadPoolExecutor(32, thread_name_prefix="kachery-channel")
        self.count: Count = lambda name, amount: None
        """Set by the HTTP side to the node's counters; called from worker threads."""
        self._active: Set[TransferState] = set()
        self._refused: Dict[str, str] = {}
        """Object key -> the ETag of the copy this node last refused there (node lifetime)."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.checked: Dict[str, Tuple[float, List[str]]] = {}
        """Channel -> when the node checked it at start and the problems found (none: ok)."""

    @property
    def active_transfers(self) -> int:
        """Loads and uploads in flight, those waiting for a provider included."""
        return len(self._active)

    # -- bookkeeping -----------------------------------------------------------------

    def bucket(self, name: str) -> ChannelBucket:
        if name not in self.buckets:
            raise UnknownChannel(
                f"this node is not in channel {name!r}",
                f"its channels: {', '.join(sorted(self.buckets))} (from {self.config.path})",
            )
        return self.buckets[name]

    def new_state(self) -> TransferState:
        state = TransferState()
        with self._lock:
            self._active.add(state)
        return state

    def forget(self, state: TransferState) -> None:
        with self._lock:
            self._active.discard(state)

    def stop_waiting(self) -> None:
        """The node is stopping: loads waiting for a provider end now (within a poll
        interval), since no provider can be expected to answer within the grace period;
        transfers that move bytes keep it."""
        self._stopping.set()

    def stop(self) -> None:
        """Cancel every transfer in flight (the node is stopping)."""
        self._stopping.set()
        with self._lock:
            for state in self._active:
                state.cancelled.set()

    def close(self) -> None:
        self.stop()
        self.executor.shutdown(wait=False)

    def transfer(self, bucket: ChannelBucket, state: TransferState) -> Transfer:
        return Transfer(bucket, self.storage, self.count, state.cancelled, state.progress)

    # -- loading ---------------------------------------------------------------------

    def load(self, uri: ContentUri, name: str, timeout: float, state: TransferState) -> Path:
        """The object's path in this node's storage, fetched through channel `name` if needed."""
        bucket = self.bucket(name)
        found = self.storage.find(uri.sha1)
        if found is not None:
            return found
        transfer = self.transfer(bucket, state)
        state.stage = "downloading"
        refused: Optional[str] = None
        try:
            path = self._download(bucket, transfer, uri)
        except RefusedCopy as exc:  # the same bad copy as before: wait for a new one
            if not bucket.channel.request:
                raise
            path, refused = None, exc.etag
        if path is None and uri.chunk_of is not None:  # cut from its whole in the bucket
            path = transfer.download_chunk(uri)
        if path is None:
            path = self._request_and_wait(bucket, transfer, uri, timeout, state, refused)
        self._forget_request(bucket, uri.sha1)
        with self._lock:
            self._refused.pop(bucket.object_key(uri.sha1), None)
        self.count("channelLoads", 1)
        return path

    def refused_etag(self, bucket: ChannelBucket, sha1: str) -> Optional[str]:
        """The ETag of the copy of `sha1` this node last refused in `bucket`, if any."""
        with self._lock:
            return self._refused.get(bucket.object_key(sha1))

    def _download(
        self, bucket: ChannelBucket, transfer: Transfer, uri: ContentUri
    ) -> Optional[Path]:
        try:
            return transfer.download(
                uri.sha1, uri.manifest_sha1, self.refused_etag(bucket, uri.sha1)
            )
        except CorruptObject as exc:
            self.count("channelObjectsRefused", 1)
            if not exc.of_manifest:
                with self._lock:
                    self._refused[bucket.object_key(uri.sha1)] = exc.etag
            if bucket.channel.request:  # leave (or renew) the request for a provider
                self._request(bucket, uri, refused_etag=exc.etag)
            raise

    def _request_and_wait(
        self,
        bucket: ChannelBucket,
        transfer: Transfer,
        uri: ContentUri,
        timeout: float,
        state: TransferState,
        refused: Optional[str] = None,
    ) -> Path:
        """Ask the providers for `uri` and wait for it: for any copy, or, when the bucket
        holds one this node refused (ETag `refused`), for a copy with another ETag."""
        channel = bucket.channel
        key = bucket.object_key(uri.sha1)
        if not channel.request:
            raise NotFoundError(
                f"{uri} is not in channel {channel.name!r} ({bucket.url(key)})",
                f"this node does not ask the channel for files (request = false in {channel.source})",
            )
        self._request(bucket, uri, refused_etag=refused)
        state.stage = "waiting for a provider"
        deadline = time.monotonic() + timeout
        interval = min(MAX_WAIT_POLL, channel.poll_seconds)
        renew_at = time.monotonic() + REQUEST_RENEW_SECONDS
        while True:
            info = bucket.head(key)
            if info is not None and info.etag != refused:
                break
            if uri.chunk_of is not None and bucket.head(bucket.object_key(uri.chunk_of.sha1)):
                break  # its whole file arrived: cut the chunk from that
            if time.monotonic() >= renew_at:  # younger than housekeeping's expiry age
                self._request(bucket, uri, refused_etag=refused)
                renew_at = time.monotonic() + REQUEST_RENEW_SECONDS
            if time.monotonic() >= deadline:
                hint = (
                    f"the request stays at {bucket.url(bucket.request_key(uri.sha1))} for "
                    "providers that come online; try again later, or wait longer with "
                    "channel_timeout (KACHERY_CHANNEL_TIMEOUT)"
                )
                if info is not None:
                    raise IntegrityError(
                        f"the copy of {uri} in channel {channel.name!r} ({bucket.url(key)}) is "
                        f"corrupt (refused ETag {refused}); its provider must upload it again "
                        f"(none did within {timeout:g} s)",
                        hint,
                    )
                raise ChannelTimeout(
                    f"no node of channel {channel.name!r} provided {uri} within {timeout:g} s",
                    hint,
                )
            if self._stopping.is_set() or state.cancelled.wait(interval):
                raise Cancelled(f"the load of {uri} from channel {channel.name!r} was stopped")
        state.stage = "downloading"
        path = self._download(bucket, transfer, uri)
        if path is None and uri.chunk_of is not None:
            path = transfer.download_chunk(uri)
        if path is None:
            raise NotFoundError(
                f"{bucket.url(key)} appeared in channel {channel.name!r}, then vanished"
            )
        return path

    def _request(
        self, bucket: ChannelBucket, uri: ContentUri, refused_etag: Optional[str] = None
    ) -> None:
        doc: Dict[str, Any] = {"nodeId": self.node_id, "time": time.time(), "sha1": uri.sha1}
        if uri.manifest_sha1:
            doc["manifestSha1"] = uri.manifest_sha1
        if uri.chunk_of is not None:  # a provider holding the whole file cuts the chunk
            doc["chunkOf"] = str(uri.chunk_of)
        if refused_etag is not None:
            doc["refusedEtag"] = refused_etag
        bucket.require_bucket()  # a PUT may create a misspelled bucket on some stores
        bucket.put_json(bucket.request_key(uri.sha1), doc)
        self.count("channelRequests", 1)

    def _forget_request(self, bucket: ChannelBucket, sha1: str) -> None:
        """Delete the request for `sha1`, if any (best effort: the file is here already)."""
        if not bucket.channel.request:
            return
        with contextlib.suppress(KacheryError):
            bucket.delete(bucket.request_key(sha1))

    # -- housekeeping ----------------------------------------------------------------

    def sweep(self) -> List[str]:
        """One round of housekeeping (see housekeeping.py); lines for the node's log."""
        now = time.time()
        lines: List[str] = []
        removed = sweep_downloads(self.storage, now)
        if removed:
            lines.append(f"removed {removed} abandoned .download file(s)")
        for name, bucket in sorted(self.buckets.items()):
            try:
                expired = 0
                if bucket.channel.request or bucket.channel.provide:
                    expired = expire_requests(bucket, now)
                aborted = abort_stale_uploads(bucket, self.journal, now)
            except KacheryError as exc:
                lines.append(f"channel {name}: housekeeping failed: {exc}")
                continue
            if expired or aborted:
                lines.append(
                    f"channel {name}: deleted {expired} expired request(s), "
                    f"aborted {aborted} stale upload(s)"
                )
        return lines

    # -- uploading -------------------------------------------------------------------

    def upload(self, uri: ContentUri, name: str, state: TransferState) -> str:
        """Upload a stored object (and its manifest) to channel `name`; return its key."""
        bucket = self.bucket(name)
        state.stage = "uploading"
        refused = self.refused_etag(bucket, uri.sha1)  # replaced even if its metadata matches
        key = self.transfer(bucket, state).upload(uri.sha1, uri.manifest_sha1, refused)
        self.count("channelUploads", 1)
        return key


def discard_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a channel thread's future nobody awaits any more (its
    awaiter was cancelled), so asyncio never logs "Future exception was never retrieved"."""

    def retrieve(done: asyncio.Future[Any]) -> None:
        if not done.cancelled():
            done.exception()

    future.add_done_callback(retrieve)


def open_channels(
    config_file: Optional[Path], storage: LocalStorage, node_id: str
) -> Optional[ChannelService]:
    """The node's channels from its config file (see `config`), or None when it has none."""
    from .config import load_node_config

    config = load_node_config(config_file, storage.root)
    if not config.channels:
        return None
    import importlib.util

    if importlib.util.find_spec("boto3") is None:
        raise ConfigError(
            f"the channels of {config.path} need boto3, which is not installed",
            "pip install 'kachery-lab[channels]' where the node runs",
        )
    return ChannelService(config, storage, node_id)
