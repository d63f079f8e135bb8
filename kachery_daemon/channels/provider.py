"""Providing: a node with `provide = true` answers other nodes' requests with files it holds.

No pub/sub: every `poll_seconds` the provider lists `<prefix>requests/`, and for each
request whose object it holds and the bucket lacks (or holds a copy some node refused as
corrupt, `refusedEtag`), it uploads the object with its manifest. A request for a chunk
(`"chunkOf": "<sha1>~<start>~<end>"`) is served by a provider holding the whole file: it
cuts the chunk (kachery_core.store.assembly) and uploads it as an object of its own. The requester polls for
the object, so the latency of a request is about one poll interval plus the upload.

A request is looked at again only when it changes (its ETag), so a request nobody deletes
costs one list entry per poll, not a HEAD per poll.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Dict, Optional, Tuple

from kachery_core.content.uri import ContentUri, is_sha1, parse_uri
from kachery_core.errors import KacheryError, StaleLinkError
from kachery_core.store.assembly import cut_chunk

from .bucket import ChannelBucket, ChannelUnreachable
from .service import ChannelService, discard_outcome
from .transfer import Cancelled


class Provider:
    def __init__(self, service: ChannelService, bucket: ChannelBucket) -> None:
        self.service = service
        self.bucket = bucket
        self._seen: Dict[str, str] = {}
        """Request key -> the request's ETag when it was last dealt with."""
        self._last_error: Optional[str] = None
        self._docs: Dict[Tuple[str, str], Dict[str, Any]] = {}
        """(request key, ETag) -> the request: each version of a request is read once."""

    async def run(self) -> None:
        """Poll until cancelled; a failed poll is logged (once per distinct error) and retried."""
        loop = asyncio.get_running_loop()
        while True:
            poll = loop.run_in_executor(self.service.executor, self.poll_once)
            try:
                await poll
                self._last_error = None
            except asyncio.CancelledError:
                discard_outcome(poll)  # the poll in its thread still ends on its own
                raise
            except KacheryError as exc:
                if str(exc) != self._last_error:
                    self._last_error = str(exc)
                    self._log(f"providing failed: {exc}")
            await asyncio.sleep(self.bucket.channel.poll_seconds)

    def poll_once(self) -> int:
        """Serve every pending request this node can; return how many files were uploaded."""
        requests = self.bucket.list_keys(self.bucket.requests_prefix)
        current = {key for key, _ in requests}
        self._seen = {k: v for k, v in self._seen.items() if k in current}
        served = 0
        self._docs = {k: v for k, v in self._docs.items() if k[0] in current}
        for key, etag in requests:
            sha1 = key[len(self.bucket.requests_prefix) :]
            if not is_sha1(sha1) or self._seen.get(key) == etag:
                continue
            request = self._docs.get((key, etag))
            if request is None:
                request = self._docs[(key, etag)] = self._read_request(key)
            whole = _whole_of(sha1, request)
            if not self._holds(sha1) and (whole is None or not self._holds(whole.sha1)):
                continue
            try:
                if whole is not None and not self._holds(sha1):
                    cut_chunk(self.service.storage, whole.uri)  # stored here, then uploaded
                served += self._serve(sha1, request)
            except (ChannelUnreachable, Cancelled):
                raise  # the next poll tries again
            except KacheryError as exc:  # this request only (a damaged local copy, say)
                self._log(f"cannot provide sha1://{sha1}: {exc}")
            self._seen[key] = etag
        return served

    def _holds(self, sha1: str) -> bool:
        try:
            return self.service.storage.find(sha1) is not None
        except StaleLinkError:
            return False

    def _read_request(self, key: str) -> Dict[str, Any]:
        try:
            doc = json.loads(self.bucket.get_small(key))
        except (KacheryError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def _serve(self, sha1: str, request: Dict[str, Any]) -> bool:
        refused = request.get("refusedEtag")
        refused = refused if isinstance(refused, str) else None
        existing = self.bucket.head(self.bucket.object_key(sha1))
        if existing is not None and existing.etag != refused:
            return False  # uploaded already; the requester will find it
        manifest = request.get("manifestSha1")
        state = self.service.new_state()
        try:
            transfer = self.service.transfer(self.bucket, state)
            transfer.upload(sha1, manifest if is_sha1(manifest) else None, replace_etag=refused)
        finally:
            self.service.forget(state)
        self.service.count("channelRequestsProvided", 1)
        self._log(f"provided sha1://{sha1} (asked by node {str(request.get('nodeId'))[:16]})")
        return True

    def _log(self, text: str) -> None:
        print(
            f"kachery-daemon: channel {self.bucket.channel.name}: {text}",
            file=sys.stderr,
            flush=True,
        )


class _Whole:
    """The whole file a chunk request names, and the chunk's URI to cut it by."""

    def __init__(self, uri: ContentUri) -> None:
        assert uri.chunk_of is not None
        self.uri = uri
        self.sha1 = uri.chunk_of.sha1


def _whole_of(sha1: str, request: Dict[str, Any]) -> Optional[_Whole]:
    """The whole file of a chunk request (`"chunkOf": "<sha1>~<start>~<end>"`), if it is one."""
    value = request.get("chunkOf")
    if not isinstance(value, str):
        return None
    try:
        uri = parse_uri(f"sha1://{sha1}?chunkOf={value}")
    except KacheryError:
        return None
    return _Whole(uri) if uri.chunk_of is not None else None
