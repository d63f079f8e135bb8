"""The node's channel glue: loads through a channel, uploads to one, and the channel
services started and stopped with the node (see channels/ for the channels themselves).

A mixin of `Node` (node.py), kept apart so the node's file operations, credentials,
mutables and feeds read as one module and its channel plumbing as another. Protocol-
neutral like `Node`: the HTTP and gRPC adapters call these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, List, Optional, Tuple, TypeVar

from kachery_core.content.uri import ContentUri
from kachery_core.errors import InvalidInputError, KacheryError, NotFoundError
from kachery_core.store.local import LocalStorage

if TYPE_CHECKING:
    from .activity import ActivityLog
    from .channels.bucket import ChannelBucket
    from .channels.service import ChannelService, TransferState

T = TypeVar("T")
PROGRESS_SECONDS = 0.25
KEEPALIVE_SECONDS = 1.0
"""A channel transfer reports progress at least this often, also while nothing moves, once
the object's size is known. Progress always carries the real size (`bytesTotal`): until it
is known (waiting for a provider of an object whose manifest is not here) none is sent,
since the original client prints a total of 0 as "Loaded 0 of 0 bytes (100.0 %)"."""
NO_CHANNELS_HINT = (
    "this node belongs to no channel; give it [channels.NAME] tables in its config file "
    "(kachery-daemon start --config FILE, or <storage dir>/kachery-node.toml)"
)

Report = Callable[[int, int, str], Awaitable[None]]
"""Told (bytes done, bytes in all, stage) while a channel transfer runs."""


class ChannelOperations:
    """`Node`'s channel methods; `Node` provides the attributes declared here."""

    storage: LocalStorage
    channels: Optional[ChannelService]
    activity: ActivityLog
    _providers: List[asyncio.Future[None]]

    if TYPE_CHECKING:

        def count(self, name: str, amount: int = 1) -> None: ...

    async def load_from_channel(
        self,
        uri: ContentUri,
        name: str,
        timeout: Optional[object] = None,
        report: Optional[Report] = None,
    ) -> Path:
        """Fetch `uri` through channel `name`, waiting up to `timeout` s for a provider."""
        from .channels.service import DEFAULT_TIMEOUT

        service = self.channels
        if service is None:
            raise InvalidInputError(f"cannot load {uri} from channel {name!r}", NO_CHANNELS_HINT)
        seconds = DEFAULT_TIMEOUT if timeout is None else timeout
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 < seconds <= 86400
        ):
            raise InvalidInputError(f"channelTimeout must be seconds above 0, not {seconds!r}")
        size = await asyncio.get_running_loop().run_in_executor(None, self._known_size, uri)
        path: Path = await self._channel_work(
            service, report, service.load, uri, name, float(seconds), size=size
        )
        self.activity.channel_transfer(name, False, str(uri), size or 0)
        return path

    def _known_size(self, uri: ContentUri) -> Optional[int]:
        """The object's size when the node can tell before fetching it: a chunk's byte
        range, the object itself, or its manifest stored here; else None."""
        if uri.chunk_of is not None:
            return uri.chunk_of.end - uri.chunk_of.start
        try:
            path = self.storage.find(uri.sha1)
            if path is not None:
                return path.stat().st_size
            if uri.manifest_sha1 is not None and self.storage.has(uri.manifest_sha1):
                manifest = self.storage.load_manifest(uri.manifest_sha1)
                return manifest.size if manifest.sha1 == uri.sha1 else None
        except (KacheryError, OSError, ValueError):
            pass  # a stale link or a bad manifest: the transfer will tell
        return None

    def check_channel_upload(self, uri: ContentUri, name: str) -> None:
        """Refuse an upload before it starts: no such channel, or no such object here."""
        if self.channels is None:
            raise InvalidInputError(f"cannot upload to channel {name!r}: {NO_CHANNELS_HINT}")
        self.channels.bucket(name)  # an unknown channel is refused, naming the node's channels
        if not self.storage.has(uri.sha1):
            raise NotFoundError(f"sha1://{uri.sha1} is not stored on this node", "store it first")

    async def upload_to_channel(
        self, uri: ContentUri, name: str, report: Optional[Report] = None
    ) -> Tuple[str, str]:
        """Upload a stored object (and its manifest) to channel `name`: (key, s3:// URL)."""
        self.check_channel_upload(uri, name)
        service = self.channels
        assert service is not None
        size = await asyncio.get_running_loop().run_in_executor(None, self._known_size, uri)
        key: str = await self._channel_work(service, report, service.upload, uri, name, size=size)
        self.activity.channel_transfer(name, True, str(uri), size or 0)
        return key, service.bucket(name).url(key)

    async def _channel_work(
        self,
        service: ChannelService,
        report: Optional[Report],
        work: Callable[..., T],
        *args: Any,
        size: Optional[int] = None,
    ) -> T:
        """Run `work(*args, state)` on the channel threads, reporting progress meanwhile
        (with the transfer's total, else `size`; nothing while neither is known)."""
        loop = asyncio.get_running_loop()
        state: TransferState = service.new_state()
        future = loop.run_in_executor(service.executor, functools.partial(work, *args, state))
        sent: Any = None
        sent_at = 0.0
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=PROGRESS_SECONDS)
                now = loop.time()
                total = state.total or size or 0
                snapshot = (state.loaded, total, state.stage)
                if done:
                    result = future.result()
                    if report is not None and sent is None and total > 0:
                        await report(total, total, state.stage)  # done within one tick
                    return result
                if report is None or total <= 0:
                    continue  # no progress with a made-up total (see KEEPALIVE_SECONDS)
                if snapshot != sent or now - sent_at >= KEEPALIVE_SECONDS:
                    await report(*snapshot)
                    sent, sent_at = snapshot, now
        except BaseException:
            state.cancelled.set()  # the client left, or the node is stopping
            from .channels.service import discard_outcome

            discard_outcome(future)  # the worker still ends, with Cancelled
            raise
        finally:
            service.forget(state)

    async def start_channels(self) -> None:
        """Count channel traffic, log each channel, and start providing where asked to."""
        service = self.channels
        if service is None:
            return
        loop = asyncio.get_running_loop()

        def count(name: str, amount: int) -> None:  # from worker threads: counters live on the loop
            with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone
                loop.call_soon_threadsafe(self.count, name, amount)

        service.count = count
        from .channels.provider import Provider

        self._providers.append(asyncio.ensure_future(_keep_house(service)))
        for name, bucket in sorted(service.buckets.items()):
            channel = bucket.channel
            roles = [
                r for r, on in (("request", channel.request), ("provide", channel.provide)) if on
            ]
            print(
                f"kachery-daemon: channel {name}: {bucket.url(channel.prefix)} at {channel.endpoint} "
                f"({', '.join(roles) or 'load only'})",
                file=sys.stderr,
                flush=True,
            )
            self._providers.append(asyncio.ensure_future(_warn_of_problems(service, bucket)))
            if channel.provide:
                self._providers.append(asyncio.ensure_future(Provider(service, bucket).run()))

    def stop_providing(self) -> None:
        """Stop answering requests and end loads waiting for a provider; loads and uploads
        that move bytes get the node's grace period (`cancel_channel_transfers`)."""
        for task in self._providers:
            task.cancel()
        self._providers = []
        if self.channels is not None:
            self.channels.stop_waiting()

    def cancel_channel_transfers(self) -> None:
        """The grace period is over: stop every channel transfer, so their requests end
        now (aiohttp would otherwise wait for them a second grace period)."""
        if self.channels is not None:
            self.channels.stop()

    def close_channels(self) -> None:
        if self.channels is not None:
            self.channels.close()


async def _keep_house(service: ChannelService) -> None:
    """Housekeeping at start and then every SWEEP_SECONDS (see channels/housekeeping.py)."""
    from .channels.housekeeping import SWEEP_SECONDS

    loop = asyncio.get_running_loop()
    while True:
        for line in await loop.run_in_executor(service.executor, service.sweep):
            print(f"kachery-daemon: {line}", file=sys.stderr, flush=True)
        await asyncio.sleep(SWEEP_SECONDS)


async def _warn_of_problems(service: ChannelService, bucket: ChannelBucket) -> None:
    """At start: a one-line warning per problem of the channel (see channels/check.py)."""
    from .channels.check import check_channel

    loop = asyncio.get_running_loop()
    problems = await loop.run_in_executor(service.executor, check_channel, bucket, False)
    service.checked[bucket.channel.name] = (time.time(), list(problems))
    for problem in problems:
        print(
            f"kachery-daemon: channel {bucket.channel.name}: warning: {problem}",
            file=sys.stderr,
            flush=True,
        )
