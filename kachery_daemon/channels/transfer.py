"""Moving one object between a node's storage and a channel's bucket, every byte verified.

Upload: the manifest first (a small object), then the file as one object, multipart with
`max_parallel` parts in flight. The manifest goes first so that whoever sees the object
can already fetch its chunk list.

Download of a file with a manifest: one ranged GET per manifest chunk, `max_parallel` at
a time, each streamed in 256 KiB blocks (`bucket.BLOCK`) straight to its offset in
`<temp_dir>/<sha1>.download` (never a whole chunk in memory) and its SHA-1 checked
against the manifest as it arrives. The whole file's SHA-1 is computed chunk by chunk as
soon as each one is complete (reading back from the page cache, overlapping later
chunks' transfers) and checked before the object appears
(`LocalStorage.adopt_verified`). When a download is cut off, the next one keeps every
chunk already in the `.download` file whose SHA-1 matches and fetches only the rest.
Without a manifest: one GET, hashed on the way, stored only if the hash matches.

Chunks are byte ranges of one bucket object, not objects of their own: the uploader sends
the file once, the bucket holds it once, and other tools see an ordinary object.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Optional

from kachery_core.content.hashing import hash_stream
from kachery_core.content.manifest import MANIFEST_THRESHOLD, Chunk, Manifest
from kachery_core.content.uri import ContentUri
from kachery_core.errors import IntegrityError, KacheryError, NotFoundError
from kachery_core.store.local import LocalStorage, open_input_file
from kachery_core.store.resumable import ResumableDownload, hash_range

from .bucket import MANIFEST_METADATA, SHA1_METADATA, ChannelBucket, ObjectInfo

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total)."""
Count = Callable[[str, int], None]
"""Adds to one of the node's counters (`/stats`)."""


class Cancelled(KacheryError):
    """The transfer was stopped (the node is stopping, or the client went away)."""


class CorruptObject(IntegrityError):
    """The bucket's bytes do not hash to the name they are stored under."""

    def __init__(
        self, message: str, hint: Optional[str], etag: str, of_manifest: bool = False
    ) -> None:
        super().__init__(message, hint)
        self.etag = etag
        self.of_manifest = of_manifest
        """Only the manifest was bad: a good upload may bring the object's same ETag back."""


class RefusedCopy(IntegrityError):
    """The bucket still holds a copy this node refused (same ETag): not downloaded again."""

    def __init__(self, message: str, hint: Optional[str], etag: str) -> None:
        super().__init__(message, hint)
        self.etag = etag


class CorruptManifest(IntegrityError):
    """The object's manifest in the bucket is damaged; the message names it (key and sha1)."""


class _Aborted(Exception):
    """Raised in a chunk worker once another chunk failed or the transfer was cancelled."""


class Transfer:
    """What every transfer of a node needs: its storage, the bucket, counters, a stop flag."""

    def __init__(
        self,
        bucket: ChannelBucket,
        storage: LocalStorage,
        count: Count,
        cancelled: threading.Event,
        progress: Progress,
    ) -> None:
        self.bucket = bucket
        self.storage = storage
        self.count = count
        self.cancelled = cancelled
        self.progress = progress

    # -- download ------------------------------------------------------------------

    def download(
        self, sha1: str, manifest_sha1: Optional[str] = None, refused_etag: Optional[str] = None
    ) -> Optional[Path]:
        """Fetch object `sha1` into storage; None if the bucket does not have it.

        `refused_etag`: a copy this node refused before; while the bucket still holds it,
        `RefusedCopy` is raised instead of downloading the same bad bytes again.
        """
        info = self.bucket.head(self.bucket.object_key(sha1))
        if info is None:
            return None
        if refused_etag is not None and info.etag == refused_etag:
            raise RefusedCopy(
                f"the copy of sha1://{sha1} in channel {self.bucket.channel.name!r} "
                f"({self.bucket.url(info.key)}) is corrupt (refused ETag {info.etag}); "
                "its provider must upload it again",
                "this node refused that copy before and does not download it again",
                info.etag,
            )
        try:
            manifest = self._manifest(
                sha1, manifest_sha1 or info.metadata.get(MANIFEST_METADATA), info
            )
            if manifest is None:
                return self._download_whole(sha1, info)
            return _ChunkedDownload(self, info, manifest).run()
        except IntegrityError as exc:
            what = exc.message if isinstance(exc, CorruptManifest) else self.bucket.url(info.key)
            detail = "" if isinstance(exc, CorruptManifest) else f": {exc.message}"
            raise CorruptObject(
                f"refused {what} (channel {self.bucket.channel.name!r}){detail}",
                "nothing was stored; the object in the bucket is corrupt: upload it again "
                "(an upload replaces a copy whose bytes differ)",
                info.etag,
                of_manifest=isinstance(exc, CorruptManifest),
            ) from None

    def download_chunk(self, uri: ContentUri) -> Optional[Path]:
        """Fetch chunk `uri` (a `?chunkOf=` URI) as a byte range of its whole object in the
        bucket, hash-checked before it is stored; None if the bucket lacks the whole."""
        chunk = uri.chunk_of
        assert chunk is not None
        info = self.bucket.head(self.bucket.object_key(chunk.sha1))
        if info is None:
            return None
        where = f"bytes {chunk.start}-{chunk.end} of {self.bucket.url(info.key)}"
        if info.size < chunk.end:
            raise IntegrityError(
                f"cannot cut {uri.sha1} from {where}: the object has only {info.size} bytes"
            )
        total = chunk.end - chunk.start
        done = 0
        try:
            with self.storage.object_writer() as writer:
                for block in self.bucket.iter_range(info.key, chunk.start, chunk.end):
                    if self.cancelled.is_set():
                        raise Cancelled(f"download of {where} stopped")
                    writer.write(block)
                    done += len(block)
                    self.count("channelBytesDownloaded", len(block))
                    self.progress(done, total)
                writer.commit(expected_sha1=uri.sha1)
        except IntegrityError as exc:
            raise IntegrityError(
                f"refused {where} as sha1://{uri.sha1} (channel "
                f"{self.bucket.channel.name!r}): {exc.message}",
                "nothing was stored",
            ) from None
        return self.storage.require(uri.sha1)

    def _manifest(
        self, sha1: str, manifest_sha1: Optional[str], info: ObjectInfo
    ) -> Optional[Manifest]:
        if manifest_sha1 is None or info.size <= MANIFEST_THRESHOLD:
            return None
        key = self.bucket.object_key(manifest_sha1)
        where = f"the manifest {self.bucket.url(key)} (sha1 {manifest_sha1}) of sha1://{sha1}"
        if not self.storage.has(manifest_sha1):
            try:
                data = self.bucket.get_small(key)
            except NotFoundError:
                return None  # uploaded without one: a single GET, not resumable
            self.count("channelBytesDownloaded", len(data))
            try:
                self.storage.store_bytes(data, expected_sha1=manifest_sha1)
            except IntegrityError as exc:
                raise CorruptManifest(f"{where}: {exc.message}") from None
        try:
            manifest = self.storage.load_manifest(manifest_sha1)
        except IntegrityError as exc:
            raise CorruptManifest(f"{where}: {exc.message}") from None
        if manifest.sha1 != sha1:
            raise CorruptManifest(f"{where} describes sha1://{manifest.sha1} instead")
        if manifest.size != info.size:
            raise IntegrityError(
                f"it has {info.size} bytes where the manifest says {manifest.size}"
            )
        return manifest

    def _download_whole(self, sha1: str, info: ObjectInfo) -> Path:
        done = 0
        with self.storage.object_writer() as writer:
            for block in self.bucket.iter_range(info.key, 0):
                if self.cancelled.is_set():
                    raise Cancelled(f"download of {info.key} stopped")
                writer.write(block)
                done += len(block)
                self.count("channelBytesDownloaded", len(block))
                self.progress(done, info.size)
            writer.commit(expected_sha1=sha1)  # IntegrityError, and nothing stored, if not
        return self.storage.require(sha1)

    # -- upload --------------------------------------------------------------------

    def upload(
        self, sha1: str, manifest_sha1: Optional[str] = None, replace_etag: Optional[str] = None
    ) -> str:
        """Upload object `sha1` (and its manifest) unless the bucket already has it.

        `replace_etag`: an object with this ETag in the bucket was refused as corrupt by
        some node; upload over it. Returns the object's key.
        """
        path = self.storage.find(sha1)
        if path is None:
            raise NotFoundError(f"sha1://{sha1} is not stored on this node", "store it first")
        size = os.stat(path).st_size
        self.bucket.require_bucket()  # a PUT may create a misspelled bucket on some stores
        metadata: Dict[str, str] = {SHA1_METADATA: sha1}
        if size > MANIFEST_THRESHOLD:
            manifest_sha1 = self._local_manifest(sha1, manifest_sha1, path)
            metadata[MANIFEST_METADATA] = manifest_sha1
            manifest_key = self.bucket.object_key(manifest_sha1)
            data = self.storage.require(manifest_sha1).read_bytes()
            # a refused copy may have been refused for its manifest: renew that too
            if replace_etag is not None or not self._holds(manifest_key, manifest_sha1, len(data)):
                self.bucket.put_bytes(manifest_key, data, {SHA1_METADATA: manifest_sha1})
                self.count("channelBytesUploaded", len(data))
        key = self.bucket.object_key(sha1)
        if self._holds(key, sha1, size, replace_etag):
            self.progress(size, size)
            return key
        sent = [0]
        lock = threading.Lock()

        def sent_more(n: int) -> None:  # called from the upload's worker threads
            with lock:
                sent[0] += n
                done = sent[0]
            self.count("channelBytesUploaded", n)
            self.progress(done, size)

        self.progress(0, size)
        self.bucket.upload_file(path, key, metadata, sent_more, self.cancelled)
        if self.cancelled.is_set():
            raise Cancelled(f"upload of {key} stopped")
        return key

    def _holds(self, key: str, sha1: str, size: int, refused_etag: Optional[str] = None) -> bool:
        """Whether the bucket's object at `key` is known to be these bytes: its SHA-1
        metadata and size match, and it is not a copy some node refused. Anything else
        (another uploader's object without the metadata, say) is uploaded over."""
        existing = self.bucket.head(key)
        return (
            existing is not None
            and existing.size == size
            and existing.metadata.get(SHA1_METADATA) == sha1
            and existing.etag != refused_etag
        )

    def _local_manifest(self, sha1: str, hint: Optional[str], path: Path) -> str:
        """The hash of the object's manifest, made (by hashing the file) if not at hand."""
        link = self.storage.read_link(sha1)
        for candidate in (hint, link.manifest_hash if link else None):
            if (
                candidate
                and self.storage.has(candidate)
                and self.storage.load_manifest(candidate).sha1 == sha1
            ):
                return candidate
        with open_input_file(path) as (source, st):
            result = hash_stream(source.readinto, None, st.st_size)
        if result.sha1 != sha1 or result.manifest is None:
            raise IntegrityError(
                f"the local copy of sha1://{sha1} at {path} hashes to {result.sha1}",
                "it is damaged; nothing was uploaded",
            )
        return self.storage.store_bytes(result.manifest.to_bytes()).sha1


class _ChunkedDownload:
    """One resumable, parallel, chunk-verified download into `<temp_dir>/<sha1>.download`."""

    def __init__(self, transfer: Transfer, info: ObjectInfo, manifest: Manifest) -> None:
        self.t = transfer
        self.info = info
        self.manifest = manifest
        self.abort = threading.Event()
        self.failure: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._done = 0

    def run(self) -> Path:
        download = ResumableDownload(
            self.t.storage, self.manifest.sha1, self.manifest, waiting=self._wait_for_lock
        )
        with download:
            finished = download.done_elsewhere()
            if finished is not None:  # another transfer completed it while we waited
                return finished
            # leaving the pool waits for its workers: none writes once the file is closed
            with ThreadPoolExecutor(self.t.bucket.channel.max_parallel, "kachery-chunk") as pool:
                try:
                    return self._download(download, pool)
                except BaseException:
                    self.abort.set()
                    raise

    def _wait_for_lock(self) -> None:
        """Another transfer has this object's file (across processes too): wait, or stop."""
        if self.t.cancelled.wait(0.1):
            raise Cancelled(f"download of {self.info.key} stopped")

    def _download(self, download: ResumableDownload, pool: ThreadPoolExecutor) -> Path:
        chunks = self.manifest.chunks
        fd = download.fd
        kept = download.verified_chunks(pool.map)
        self._done = sum(chunks[i].end - chunks[i].start for i in kept)
        self.t.progress(self._done, self.manifest.size)
        complete = [threading.Event() for _ in chunks]
        for i in kept:
            complete[i].set()
        for i, chunk in enumerate(chunks):
            if i not in kept:
                future = pool.submit(self._fetch, fd, chunk, complete[i])
                future.add_done_callback(self._note_failure)
        for i, chunk in enumerate(chunks):  # in order, while later chunks still arrive
            while not complete[i].wait(0.05):
                self._stop_if_needed()
            hash_range(fd, chunk.start, chunk.end, download.whole)
        return download.commit()

    def _stop_if_needed(self) -> None:
        if self.failure is not None:
            self.abort.set()
            raise self.failure
        if self.t.cancelled.is_set():
            self.abort.set()
            raise Cancelled(f"download of {self.info.key} stopped")

    def _note_failure(self, future: Future[None]) -> None:
        exc = future.exception()
        if exc is not None and not isinstance(exc, _Aborted) and self.failure is None:
            self.failure = exc
            self.abort.set()

    def _fetch(self, fd: int, chunk: Chunk, complete: threading.Event) -> None:
        """Fetch one chunk to its place in the file, checking its SHA-1 as it arrives.

        A dropped connection is the bucket's to retry (`iter_range` resumes where the
        bytes stopped), so each chunk costs at most `store_errors.ATTEMPTS` requests.
        """
        digest = hashlib.sha1()
        position = chunk.start
        for block in self.t.bucket.iter_range(self.info.key, chunk.start, chunk.end):
            if self.abort.is_set() or self.t.cancelled.is_set():
                raise _Aborted()
            digest.update(block)
            _pwrite_all(fd, block, position)
            position += len(block)
            self.t.count("channelBytesDownloaded", len(block))
            self._advance(len(block))
        if digest.hexdigest() != chunk.sha1:
            raise IntegrityError(
                f"bytes {chunk.start}-{chunk.end} hash to {digest.hexdigest()}, "
                f"the manifest says {chunk.sha1}"
            )
        complete.set()

    def _advance(self, n: int) -> None:
        with self._lock:
            self._done += n
            done = self._done
        self.t.progress(done, self.manifest.size)


def _pwrite_all(fd: int, data: bytes, position: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, position)
        view = view[n:]
        position += n
