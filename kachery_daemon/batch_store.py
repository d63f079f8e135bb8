"""Batch stores: many small objects in one request (`POST /storeFiles`, `/storeLocalFiles`).

A store through a node used to cost one request per file, and for a 4 KiB file that
request was nearly all of it: headers, the credential check, JSON, a trip to a worker
thread per file, worker threads queueing on SQLite's write lock (about 4 ms of the node's
CPU per file, benchmarks/README.md). Here one request carries up to
`wire.STORE_BATCH_MAX_FILES` objects, stored a slice at a time on one worker thread.

Each object is hashed by the node and kept only if it hashes to the SHA-1 the client
named (`LocalStorage.store_bytes` with `expected_sha1`: staging file, then rename), and it
is recorded as a store (pinned), not a fetch. A request refused midway (a bad hash, a
truncated or malformed body) is a 4xx; objects of it already received whole and verified
stay stored (they are exactly what they are named), nothing else does. Paths are read as
for `/storeFile` (`path_policy`), each failing on its own: the answer says which.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Sequence, Tuple, Union

from kachery_core.errors import InvalidInputError, KacheryError
from kachery_core.protocol import wire
from kachery_core.store.base import StoredObject

from . import activity, path_policy

if TYPE_CHECKING:
    from .node import Node

SLICE_FILES = 256
"""Objects stored per trip to the worker thread."""
SLICE_BYTES = 4 << 20
"""Object bytes gathered before a trip to the worker thread."""
AT_ONCE = threading.BoundedSemaphore(1)
"""Slices stored at the same time, whatever the number of batches: two threads keep two
cores busy in the kernel (most of a small store is mkdir, create and rename); more only
queue on the interpreter lock and the kernel's directory locks, and took longer in all."""

Item = Union[StoredObject, KacheryError]
"""One object of a batch: stored, or why not (paths only; bytes refuse the request)."""


async def store_objects(node: Node, objects: AsyncIterator[Tuple[str, bytes]]) -> List[Item]:
    """Store (sha1, bytes) pairs as they arrive, a slice at a time, each hash checked."""
    loop = asyncio.get_running_loop()
    stored: List[Item] = []
    pending: List[Tuple[str, bytes]] = []
    held = 0
    async for sha1, data in objects:
        pending.append((sha1, data))
        held += len(data)
        if len(pending) >= SLICE_FILES or held >= SLICE_BYTES:
            stored += await loop.run_in_executor(None, _store_slice, node, pending)
            pending, held = [], 0
    if pending:
        stored += await loop.run_in_executor(None, _store_slice, node, pending)
    return stored


def _store_slice(node: Node, objects: Sequence[Tuple[str, bytes]]) -> List[Item]:
    stored: List[Item] = []
    with AT_ONCE:
        for sha1, data in objects:
            stored.append(_store_one(node, sha1, data))
    return stored


def _store_one(node: Node, sha1: str, data: bytes) -> StoredObject:
    obj = node.storage.store_bytes(data, expected_sha1=sha1, cached=False)
    node.count("storedBytes", obj.size)
    node.count("storeRequests")
    node.activity.add(activity.STORE, f"sha1://{obj.sha1}", obj.size, "in a batch")
    return obj


def parse_paths_request(doc: Dict[str, Any]) -> List[str]:
    """The paths a `/storeLocalFiles` body names, each checked as text (else 400)."""
    paths = doc.get("localFilePaths")
    if not isinstance(paths, list):
        raise InvalidInputError("field 'localFilePaths' must be a list of paths")
    if len(paths) > wire.STORE_BATCH_MAX_FILES:
        raise InvalidInputError(
            f"a batch store may name at most {wire.STORE_BATCH_MAX_FILES} files, not {len(paths)}",
            "split it into several requests",
        )
    for i, path in enumerate(paths):
        if not isinstance(path, str):
            raise InvalidInputError(f"localFilePaths[{i}] must be a string")
        path_policy.check_path_text(path, f"localFilePaths[{i}]")
    return paths


def store_local_files(node: Node, paths: Sequence[str]) -> List[Item]:
    """Store files of this machine by path (blocking): each stored, or its own failure."""
    results: List[Item] = []
    budget = wire.STORE_BATCH_MAX_BYTES
    check = node.path_policy.checker()
    with AT_ONCE:
        for path in paths:
            room = min(budget, wire.STORE_BATCH_MAX_OBJECT_BYTES)
            try:
                obj = node.store_client_file(path, room, check)
            except KacheryError as exc:
                results.append(exc)
                continue
            budget -= obj.size
            node.count("storeRequests")
            node.activity.add(activity.STORE, f"sha1://{obj.sha1}", obj.size, "by path, in a batch")
            results.append(obj)
    return results
