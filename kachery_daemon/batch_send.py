"""Batch downloads: many small objects in one answer (`POST /downloadFiles`).

A per-file request costs a client and a node a millisecond or two of Python each, which is
most of the time a tree of thousands of small files takes to move. Here one request names
up to `wire.BATCH_MAX_FILES` objects and the answer carries them all, each as a header
frame and its raw bytes (the frames are in `kachery_core/protocol/wire.py`).

Bounds: only objects up to `wire.BATCH_MAX_OBJECT_BYTES` travel in a batch, and at most
`wire.BATCH_MAX_BYTES` of them per answer; the rest are answered `notSent` (the client
fetches them one by one). Objects are read whole, a slice of at most `SLICE_BYTES` at a
time on a worker thread, so memory stays flat whatever the batch. A linked file is read
through `PathPolicy` as a per-file download reads it (never one of the node's private
files), and one that changed since it was linked is `notFound` (its error type says
`staleLink`).
"""

from __future__ import annotations

import asyncio
import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional, Sequence, Tuple

from kachery_core.errors import KacheryError, NotFoundError
from kachery_core.protocol import wire

if TYPE_CHECKING:
    from .node import Node

SLICE_BYTES = 4 << 20
"""Object bytes read per trip to a worker thread (and written to the client at once)."""
SLICE_FILES = 256
"""Objects read per trip to a worker thread."""


@dataclass(frozen=True)
class BatchItem:
    """One object of a batch answer: its bytes, or why they are not in it."""

    sha1: str
    data: Optional[bytes] = None
    size: int = -1
    missing: Optional[KacheryError] = None
    """Not on the node (or a stale link): a `notFound` frame."""
    not_sent: Optional[str] = None
    """Why the bytes are left out (too large, over the answer's budget): a `notSent` frame."""

    def frames(self) -> List[bytes]:
        """What this object adds to the answer: its header frame, then its bytes."""
        if self.missing is not None:
            return [wire.encode_frame(wire.batch_not_found_frame(self.sha1, self.missing))]
        if self.not_sent is not None:
            frame = wire.batch_not_sent_frame(self.sha1, self.size, self.not_sent)
            return [wire.encode_frame(frame)]
        assert self.data is not None
        return [wire.encode_frame(wire.batch_file_frame(self.sha1, len(self.data))), self.data]


def parse_batch_request(doc: Dict[str, Any]) -> List[str]:
    """The SHA-1s a `/downloadFiles` body asks for, every one checked (else InvalidInputError).

    Each entry is a FileKey; only its `sha1` matters here (a batch sends whole objects).
    """
    from kachery_core.errors import InvalidInputError

    files = doc.get("files")
    if not isinstance(files, list):
        raise InvalidInputError("field 'files' must be a list of FileKeys")
    if len(files) > wire.BATCH_MAX_FILES:
        raise InvalidInputError(
            f"a batch may ask for at most {wire.BATCH_MAX_FILES} files, not {len(files)}",
            "split it into several requests",
        )
    return [wire.parse_file_key(key, f"files[{i}]").sha1 for i, key in enumerate(files)]


async def read_batch(node: Node, sha1s: Sequence[str]) -> AsyncIterator[List[BatchItem]]:
    """The objects asked for, in order, a slice at a time (each read on a worker thread)."""
    loop = asyncio.get_running_loop()
    budget = wire.BATCH_MAX_BYTES
    start = 0
    while start < len(sha1s):
        items, budget = await loop.run_in_executor(
            None, _read_slice, node, sha1s[start : start + SLICE_FILES], budget
        )
        start += len(items)
        yield items


def _read_slice(node: Node, sha1s: Sequence[str], budget: int) -> Tuple[List[BatchItem], int]:
    """Read objects until SLICE_BYTES are in hand (at least one object is read)."""
    items: List[BatchItem] = []
    in_hand = 0
    for sha1 in sha1s:
        if in_hand >= SLICE_BYTES:
            break
        item = read_one(node, sha1, min(budget, wire.BATCH_MAX_OBJECT_BYTES))
        if item.data is not None:
            budget -= len(item.data)
            in_hand += len(item.data)
        items.append(item)
    return items, budget


def read_one(node: Node, sha1: str, room: int) -> BatchItem:
    """Object `sha1` whole, if it is here and at most `room` bytes (blocking)."""
    try:
        path = node.storage.find(sha1)
    except NotFoundError as exc:  # a stale link
        return BatchItem(sha1, missing=exc)
    if path is None:
        return BatchItem(
            sha1, missing=NotFoundError(f"sha1://{sha1} not found in {node.storage.root}")
        )
    vanished = NotFoundError(f"sha1://{sha1} vanished from the node")
    source: Optional[io.FileIO]
    try:
        if node.storage.root in path.parents:  # the object itself: never through a symlink
            source = node.storage.open_object(sha1)
        else:  # a linked file: only one the node may read for a client
            source = io.FileIO(node.path_policy.open(str(path), "the linked file").fd, "rb")
    except KacheryError as exc:
        return BatchItem(sha1, missing=NotFoundError(str(exc)))
    except FileNotFoundError:
        source = None
    if source is None:
        return BatchItem(sha1, missing=vanished)
    with source:
        size = os.fstat(source.fileno()).st_size
        limit = min(room, wire.BATCH_MAX_OBJECT_BYTES)
        if size > limit:
            why = "too large for a batch" if size > wire.BATCH_MAX_OBJECT_BYTES else "over budget"
            return BatchItem(sha1, size=size, not_sent=why)
        data = source.read(size + 1)
    if len(data) != size:  # a linked file that changed under us: let a lone download tell
        return BatchItem(sha1, size=size, not_sent="changed while read")
    return BatchItem(sha1, data=data, size=size)
