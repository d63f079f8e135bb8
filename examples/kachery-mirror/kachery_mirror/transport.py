"""`MirrorTransport`: the read-only `mirror` backend.

A lab publishes a kachery storage directory with any web server; this backend loads
objects from it by their path in the usual layout (`<url>/sha1/aa/bb/cc/<hash>`) into a
local cache, which is itself a storage directory (by default kachery's own, so objects
are shared with the other backends). Every object is hash-checked before it appears in
the cache. Storing, linking, mutables and feeds are not overridden, so kachery refuses
them with `unsupported_hint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Optional, cast

from kachery_core.backend.base import Backend, NodeInfo
from kachery_core.content.hashing import BLOCK_SIZE, Progress
from kachery_core.content.manifest import Manifest
from kachery_core.content.uri import ContentUri
from kachery_core.errors import IntegrityError, NotFoundError, StaleLinkError
from kachery_core.settings.config import Config
from kachery_core.store.local import LocalStorage

from .fetch import ObjectFetcher
from .settings import PLUGIN_NAME, MirrorSettings


class MirrorTransport(Backend):
    """Loads objects from a web server into a local cache; stores nothing."""

    name = PLUGIN_NAME
    unsupported_hint = (
        "the mirror is read-only; store files with another backend "
        "(for example: kachery-client --backend local store-file PATH) "
        "and publish that storage directory on the web server"
    )

    def __init__(self, base_url: str, cache: LocalStorage, timeout: float) -> None:
        self.base_url = base_url
        self.cache = cache
        self.fetcher = ObjectFetcher(base_url, timeout, cache)

    @classmethod
    def from_config(cls, config: Config) -> MirrorTransport:
        settings = MirrorSettings.from_config(config)
        cache = LocalStorage(
            settings.cache_dir, config.temp_dir, config.keep_temp_files, config.fsync
        )
        return cls(settings.require_url(), cache, settings.timeout)

    def node_info(self) -> NodeInfo:
        return NodeInfo(self.name, None, str(self.cache.root), address=self.base_url)

    def local_store(self) -> LocalStorage:
        """The cache, which `kachery-client verify` checks."""
        return self.cache

    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        path = self._cached(uri.sha1) or self.fetcher.fetch(uri.sha1, progress)
        if path is None and uri.manifest_sha1 is not None:
            path = self._assemble(uri, progress)
        if path is None:
            raise NotFoundError(
                f"{uri} is not on the mirror: {self.fetcher.url_of(uri.sha1)} "
                + _and_manifest(self.fetcher, uri)
                + "answered 404 Not Found",
                "check the URI, or store the file in the storage directory the server publishes",
            )
        return str(path)

    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        self.load_file(uri)
        return cast(BinaryIO, self.cache.open_range(uri.sha1, start, end))

    def close(self) -> None:
        self.fetcher.close()

    # -- internals -----------------------------------------------------------------

    def _cached(self, sha1: str) -> Optional[Path]:
        """The object's path in the cache; a stale link there is replaced by a download."""
        try:
            return self.cache.find(sha1)
        except StaleLinkError:
            return None

    def _assemble(self, uri: ContentUri, progress: Optional[Progress]) -> Optional[Path]:
        """Build a large file from its manifest's chunks when the server lacks the whole.

        Each chunk is downloaded into the cache (verified against the manifest), so an
        interrupted load resumes where it stopped; the whole is verified once more.
        """
        assert uri.manifest_sha1 is not None
        manifest_path = self._cached(uri.manifest_sha1) or self.fetcher.fetch(uri.manifest_sha1)
        if manifest_path is None:
            return None
        manifest = Manifest.from_bytes(manifest_path.read_bytes())
        if manifest.sha1 != uri.sha1:
            raise IntegrityError(
                f"manifest {uri.manifest_sha1} describes sha1://{manifest.sha1}, not {uri}",
                "the URI's ?manifest= is wrong; ask whoever shared it for the right one",
            )
        for chunk in manifest.chunks:
            if self._cached(chunk.sha1) is not None:
                continue
            if self.fetcher.fetch(chunk.sha1, _shifted(progress, chunk.start)) is None:
                raise NotFoundError(
                    f"{uri} is not on the mirror: neither the whole file "
                    f"({self.fetcher.url_of(uri.sha1)}) nor its chunk at bytes "
                    f"{chunk.start}-{chunk.end} ({self.fetcher.url_of(chunk.sha1)}) is there",
                    "store the file in the storage directory the server publishes",
                )
        with self.cache.object_writer() as writer:
            buffer = bytearray(BLOCK_SIZE)
            for chunk in manifest.chunks:
                with self.cache.open_range(chunk.sha1) as part:
                    n = part.readinto(buffer)
                    while n:
                        writer.write(memoryview(buffer)[:n])
                        n = part.readinto(buffer)
            writer.commit(expected_sha1=uri.sha1)
        return self.cache.find(uri.sha1)


def _shifted(progress: Optional[Progress], offset: int) -> Optional[Progress]:
    """Report a chunk's progress as a position in the whole file."""
    if progress is None:
        return None
    report = progress
    return lambda done: report(offset + done)


def _and_manifest(fetcher: ObjectFetcher, uri: ContentUri) -> str:
    if uri.manifest_sha1 is None:
        return ""
    return f"and its manifest {fetcher.url_of(uri.manifest_sha1)} both "
