"""Checking a channel's store before anyone waits on it: endpoint, credentials, bucket, prefix.

Used by `kachery-daemon channel check NAME` (exit 1 on any problem) and at node start
(each problem a one-line warning in the node's log, without the write check). Nothing is
ever created: a missing bucket is reported, not made. The write check puts and deletes one
empty object under `<prefix>requests/`, whose name is no SHA-1, so providers never take it
for a request.
"""

from __future__ import annotations

import secrets
from typing import List

from kachery_core.errors import KacheryError

from .bucket import ChannelBucket


def check_channel(bucket: ChannelBucket, write: bool = True) -> List[str]:
    """One line per problem found; an empty list when the channel is usable.

    `write`: also try a write where the node writes (request or provide); off at node
    start, so that a node starting never adds an object others might list.
    """
    channel = bucket.channel
    try:
        bucket.require_bucket()  # reaches the endpoint, signs with the credentials
    except KacheryError as exc:
        return [str(exc)]  # nothing further can work
    problems: List[str] = []
    try:
        bucket.list_keys(channel.prefix, limit=1)
    except KacheryError as exc:
        problems.append(f"cannot list {bucket.url(channel.prefix)}: {exc}")
    if write and (channel.request or channel.provide):
        key = f"{bucket.requests_prefix}check-{secrets.token_hex(8)}"
        try:
            bucket.put_bytes(key, b"")
            bucket.delete(key)
        except KacheryError as exc:
            problems.append(f"cannot write under {bucket.url(channel.prefix)}: {exc}")
    return problems
