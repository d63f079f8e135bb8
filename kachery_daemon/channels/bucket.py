"""A channel's bucket, through boto3: object and request keys, and errors users can read.

Layout under the channel's prefix (the same as a storage directory, so a bucket can be
browsed like one):

    <prefix>sha1/aa/bb/cc/<sha1>     an object (a manifest is an object like any other)
    <prefix>requests/<sha1>          "please upload this": {"nodeId", "time", ...}

Every boto3 failure becomes a one-line error naming the channel and the endpoint
(`store_errors.py`, which also sets how often a request is tried). boto3 is imported
here only, on first use, so the CLI and a node without channels never pay for it.

Retries happen in one place per request, so a message's "tried N times" is what happened:
our own loop (`_call`, `iter_range`) for every request but a multipart upload's, with
botocore's retries off; botocore's retries for the parts of a multipart upload, which run
inside boto3's transfer manager.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ContextManager,
    Dict,
    Iterator,
    List,
    Optional,
    Tuple,
    TypeVar,
)

from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.errors import ConfigError, KacheryError, NotFoundError

from .config import ChannelConfig
from .store_errors import (
    ATTEMPTS,
    RETRIED,
    ChannelUnreachable,
    call_with_retries,
    no_such_bucket,
    pause_before_retry,
    store_errors,
    tried,
)

T = TypeVar("T")

if TYPE_CHECKING:
    from .housekeeping import UploadJournal

BLOCK = 256 << 10
"""Bytes read from a response body at a time: memory per transfer stays at one block.

Small on purpose. Each read is a fresh `bytes` (urllib3's `readinto` reads into a
temporary and copies, so a reused buffer saves nothing), and glibc serves blocks this
large from per-thread arenas once its mmap threshold has grown past them, keeping
several freed blocks per thread. With 1 MiB blocks (and 4 MiB reads in `hash_range`) a
node downloading 256 MiB or 1 GiB with 4 chunk threads peaked at 106-113 MiB; with
256 KiB ones in both places at 84-85 MiB, no slower (benchmarks/README.md, "Channel row
memory"). The Python overhead
per block stays negligible next to the socket copy."""
MANIFEST_METADATA = "kachery-manifest-sha1"
"""Object metadata naming the manifest, so a URI without `?manifest=` still resumes."""
SHA1_METADATA = "kachery-sha1"
"""Object metadata: the SHA-1 of the bytes the uploader sent. An upload is skipped only when
the bucket's object carries the same SHA-1 (and size), so uploading again repairs a copy
that someone overwrote with other bytes."""
SMALL_OBJECT_LIMIT = 64 << 20


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    metadata: Dict[str, str]


class ChannelBucket:
    """One channel's bucket and prefix. Thread-safe: transfers share one boto3 client."""

    def __init__(self, channel: ChannelConfig, journal: Optional[UploadJournal] = None) -> None:
        self.channel = channel
        self.journal = journal
        """Where multipart uploads this node starts are recorded (see housekeeping)."""
        self._client: Any = None
        self._upload_client: Any = None
        self._session: Any = None
        """One boto3 session for both clients: each session loads and keeps its own copy
        of the S3 service model (12-13 MiB resident), so a second one would double it."""
        self._lock = threading.Lock()

    # -- keys ----------------------------------------------------------------------

    def object_key(self, sha1: str) -> str:
        return f"{self.channel.prefix}sha1/{sha1[0:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"

    def request_key(self, sha1: str) -> str:
        return f"{self.channel.prefix}requests/{sha1}"

    @property
    def requests_prefix(self) -> str:
        return f"{self.channel.prefix}requests/"

    def url(self, key: str) -> str:
        return f"s3://{self.channel.bucket}/{key}"

    # -- the client ------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """For requests we retry ourselves: botocore tries each one once."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client(botocore_attempts=1)
            return self._client

    @property
    def upload_client(self) -> Any:
        """For boto3's transfer manager, whose part uploads only botocore can retry."""
        with self._lock:
            if self._upload_client is None:
                self._upload_client = self._make_client(botocore_attempts=ATTEMPTS)
                self._upload_client.meta.events.register(
                    "after-call.s3.CreateMultipartUpload", self._upload_started
                )
            return self._upload_client

    def _upload_started(self, parsed: Dict[str, Any], **kwargs: Any) -> None:
        """Record each multipart upload as boto3 starts it, to abort it if it is left open."""
        if self.journal is not None and parsed.get("UploadId"):
            self.journal.add(self.channel.bucket, str(parsed["Key"]), str(parsed["UploadId"]))

    def _make_client(self, botocore_attempts: int) -> Any:
        """A client of this bucket's session (called under `_lock`: sessions are not
        thread-safe, the clients they make are)."""
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import ProfileNotFound
        except ImportError:
            raise ConfigError(
                f"channel {self.channel.name!r} needs boto3, which is not installed",
                "pip install 'kachery-lab[channels]' where the node runs",
            ) from None
        try:
            if self._session is None:
                self._session = boto3.session.Session(profile_name=self.channel.aws_profile)
            session = self._session
        except ProfileNotFound:
            raise ConfigError(
                f"AWS profile {self.channel.aws_profile!r} of channel {self.channel.name!r} "
                f"({self.channel.source}) is not defined",
                "add it to ~/.aws/config of the node's user, or fix aws_profile",
            ) from None
        options: Dict[str, Any] = {
            "connect_timeout": self.channel.connect_timeout,
            "read_timeout": self.channel.read_timeout,
            "retries": {"mode": "standard", "total_max_attempts": botocore_attempts},
            # parallel chunks, a parallel upload and request polling at the same time
            "max_pool_connections": max(10, 2 * self.channel.max_parallel + 4),
        }
        if self.channel.endpoint_url:  # S3-compatible stores rarely serve bucket subdomains
            options["s3"] = {"addressing_style": "path"}
        return session.client(
            "s3",
            endpoint_url=self.channel.endpoint_url,
            region_name=self.channel.region,
            config=Config(**options),
        )

    # -- operations ------------------------------------------------------------------

    def require_bucket(self) -> None:
        """HeadBucket: the bucket must exist. Stores that create buckets on the first PUT
        (SeaweedFS by default) would otherwise make one from a misspelled name, and a load
        would wait for providers that never look there."""
        try:
            self._call(
                f"looking up bucket {self.channel.bucket}",
                lambda: self.client.head_bucket(Bucket=self.channel.bucket),
            )
        except NotFoundError:
            raise no_such_bucket(self.channel) from None

    def head(self, key: str) -> Optional[ObjectInfo]:
        """Size, ETag and metadata of an object, or None when there is none."""
        try:
            doc = self._call(
                f"looking up {key}",
                lambda: self.client.head_object(Bucket=self.channel.bucket, Key=key),
            )
        except NotFoundError:
            return None
        metadata = {str(k).lower(): str(v) for k, v in (doc.get("Metadata") or {}).items()}
        return ObjectInfo(key, int(doc["ContentLength"]), str(doc.get("ETag", "")), metadata)

    def iter_range(self, key: str, start: int, end: Optional[int] = None) -> Iterator[bytes]:
        """The object's bytes [start, end) as blocks of at most BLOCK bytes.

        A connection lost midway is asked again for the bytes not yet delivered, so the
        caller sees each byte once; ATTEMPTS requests in all.
        """
        what = f"downloading {key}"
        position = start
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.errors(what, attempt):
                    body = self._get_range(key, position, end)
                    try:
                        while True:
                            block = body.read(BLOCK)
                            if not block:
                                break
                            position += len(block)
                            yield block
                    finally:
                        body.close()
                    if end is not None and position < end:
                        raise ChannelUnreachable(
                            f"the store of channel {self.channel.name!r} at "
                            f"{self.channel.endpoint} sent {position - start} of "
                            f"{end - start} bytes while {what}",
                            tried(attempt),
                        )
                return
            except RETRIED:
                if attempt == ATTEMPTS:
                    raise
                pause_before_retry(attempt)

    def _get_range(self, key: str, start: int, end: Optional[int]) -> Any:
        args: Dict[str, Any] = {"Bucket": self.channel.bucket, "Key": key}
        if start or end is not None:
            args["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        return self.client.get_object(**args)["Body"]

    def get_small(self, key: str) -> bytes:
        """A small object (a manifest, a request) read whole."""
        data = bytearray()
        for block in self.iter_range(key, 0):
            data += block
            if len(data) > SMALL_OBJECT_LIMIT:
                raise KacheryError(f"{self.url(key)} is too large for what it should be")
        return bytes(data)

    def put_bytes(self, key: str, data: bytes, metadata: Optional[Dict[str, str]] = None) -> None:
        self._call(
            f"uploading {key}",
            lambda: self.client.put_object(
                Bucket=self.channel.bucket, Key=key, Body=data, Metadata=metadata or {}
            ),
        )

    def put_json(self, key: str, doc: Dict[str, Any]) -> None:
        self.put_bytes(key, json.dumps(doc, separators=(",", ":")).encode())

    def delete(self, key: str) -> None:
        self._call(
            f"deleting {key}",
            lambda: self.client.delete_object(Bucket=self.channel.bucket, Key=key),
        )

    def list_keys(self, prefix: str, limit: Optional[int] = None) -> List[Tuple[str, str]]:
        """(key, ETag) of every object under `prefix` (the first `limit` of them)."""
        return [(key, etag) for key, etag, _ in self.list_entries(prefix, limit)]

    def list_entries(
        self, prefix: str, limit: Optional[int] = None
    ) -> List[Tuple[str, str, float]]:
        """(key, ETag, last modified as a Unix time) of every object under `prefix`."""

        def listing() -> List[
            Tuple[str, str, float]
        ]:  # tried again whole: pages are no transaction
            found: List[Tuple[str, str, float]] = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.channel.bucket,
                Prefix=prefix,
                PaginationConfig={} if limit is None else {"MaxItems": limit},
            )
            for page in pages:
                for item in page.get("Contents", []):
                    modified = item.get("LastModified")
                    found.append(
                        (
                            str(item["Key"]),
                            str(item.get("ETag", "")),
                            modified.timestamp() if modified is not None else time.time(),
                        )
                    )
            return found

        return self._call(f"listing {prefix}", listing)

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; one that is gone already counts as aborted."""
        with contextlib.suppress(NotFoundError):
            self._call(
                f"aborting an upload of {key}",
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.channel.bucket, Key=key, UploadId=upload_id
                ),
            )

    def upload_file(
        self,
        path: Path,
        key: str,
        metadata: Dict[str, str],
        progress: Callable[[int], None],
        cancelled: threading.Event,
    ) -> None:
        """Upload a file as one object: multipart, `max_parallel` parts at a time.

        `progress` gets the bytes sent since the last call. Setting `cancelled` aborts the
        upload (no object appears: S3 completes a multipart upload atomically).
        """
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=CHUNK_SIZE,
            multipart_chunksize=CHUNK_SIZE,
            max_concurrency=self.channel.max_parallel,
            use_threads=True,
        )
        started = time.time()
        try:
            self._upload(path, key, metadata, progress, cancelled, config)
        except BaseException:
            self._end_uploads(key, started, abort=True)
            raise
        self._end_uploads(key, started, abort=False)

    def _end_uploads(self, key: str, since: float, abort: bool) -> None:
        """Forget (after success) or abort (after a failure) the multipart uploads of `key`
        this node started since `since`; one whose abort fails is left to housekeeping."""
        if self.journal is None:
            return
        for entry in self.journal.entries():
            if entry.get("key") != key or float(entry.get("time", 0)) < since - 1:
                continue
            upload_id = str(entry["uploadId"])
            if abort:
                try:
                    self.abort_upload(key, upload_id)
                except KacheryError:
                    continue
            self.journal.remove(upload_id)

    def _upload(
        self,
        path: Path,
        key: str,
        metadata: Dict[str, str],
        progress: Callable[[int], None],
        cancelled: threading.Event,
        config: Any,
    ) -> None:
        with self.errors(f"uploading {key}", ATTEMPTS):  # botocore retried each part
            from boto3.s3.transfer import ProgressCallbackInvoker, create_transfer_manager

            manager = create_transfer_manager(self.upload_client, config)
            try:
                future = manager.upload(
                    str(path),
                    self.channel.bucket,
                    key,
                    extra_args={"Metadata": metadata},
                    subscribers=[ProgressCallbackInvoker(progress)],
                )
                while not future.done():
                    if cancelled.wait(0.1):
                        future.cancel()
                        break
                future.result()
            finally:
                manager.shutdown(cancel=cancelled.is_set())

    # -- retries and errors -----------------------------------------------------------

    def _call(self, what: str, request: Callable[[], T]) -> T:
        """`request()`, tried up to ATTEMPTS times while the store is unreachable or busy."""
        return call_with_retries(self.channel, what, request)

    def errors(self, what: str, attempts: int = 1) -> ContextManager[None]:
        """Turn boto3's exceptions into one-line errors naming the channel and endpoint."""
        return store_errors(self.channel, what, attempts)
