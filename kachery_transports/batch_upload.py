"""Storing many small files through a node at once (`http` and `remote` backends).

One request per file cost the client and the node a few milliseconds of Python each, most
of what a tree of small files took to store. Here files go in groups of up to
`FILES_PER_REQUEST` (and `BYTES_PER_REQUEST`), several groups at a time on the backend's
`parallel_transfers` threads:

- when the node may read this machine's paths for us (`node_reads_local_paths`), a group
  is named by its paths (`POST /storeLocalFiles`); a file the node may not read is sent
  as bytes instead, as a single store does;
- otherwise its bytes go in one framed body (`POST /storeFiles`), each object with the
  SHA-1 hashed here, which the node checks before keeping it.

A node without these routes (404, older versions) gets one request per file from then on.
The client checks every answer against the file's own hash (`verified_store`).

    >>> store_files(backend, ["a.txt", "b.txt"])   # doctest: +SKIP
    [StoredObject(sha1='...', size=4096, manifest_sha1=None), ...]
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple

from kachery_core.backend.batch import BatchProgress, run_batch
from kachery_core.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    TransportError,
)
from kachery_core.protocol import wire
from kachery_core.store.base import StoredObject

if TYPE_CHECKING:
    from .http import HttpDaemonTransport

FILES_PER_REQUEST = 250
"""Files per batch request: the per-request cost vanishes, and a tree of a thousand files
still makes a few requests to run at once."""
BYTES_PER_REQUEST = 4 << 20
"""File bytes per batch request, for the same reason (well within the node's bounds)."""

Group = List[Tuple[int, str, int]]
"""(index in the caller's list, path, size) of each file of one request."""


def store_files(
    backend: HttpDaemonTransport, paths: Sequence[str], counter: BatchProgress
) -> List[StoredObject]:
    """The objects of `paths` (small files), in order, stored in batch requests."""
    results: Dict[int, StoredObject] = {}

    def job(group: Group) -> Group:
        """One request; returns the files left to store one by one."""
        if backend.batch_store_route is False:
            return group
        try:
            left = _store_group(backend, group, results, counter)
        except NotFoundError:
            if backend.batch_store_route:
                raise  # the route answered before: this is a real miss
            backend.batch_store_route = False  # an older node: one by one from now on
            return group
        backend.batch_store_route = True
        return left

    left = [f for done in run_batch(_groups(paths), job, backend.parallel_transfers) for f in done]

    def one(item: Tuple[int, str, int]) -> None:
        index, path, _ = item
        file_progress = counter.for_file()
        results[index] = backend.store_file(path, file_progress)
        file_progress.done(results[index].size)

    run_batch(left, one, backend.parallel_transfers)
    return [results[i] for i in range(len(paths))]


def _groups(paths: Sequence[str]) -> List[Group]:
    groups: List[Group] = []
    held = 0
    for index, path in enumerate(paths):
        size = os.stat(path).st_size
        if not groups or len(groups[-1]) >= FILES_PER_REQUEST or held + size > BYTES_PER_REQUEST:
            groups.append([])
            held = 0
        groups[-1].append((index, path, size))
        held += size
    return groups


def _store_group(
    backend: HttpDaemonTransport,
    group: Group,
    results: Dict[int, StoredObject],
    counter: BatchProgress,
) -> Group:
    if backend.node_reads_local_paths:
        doc = {"localFilePaths": [os.path.abspath(path) for _, path, _ in group]}
        answer = backend.http.post_json("/storeLocalFiles", doc, "a batch store")
        group = _take(backend, group, answer, results, counter, refused_ok=True)
    if group:
        body, sha1s = _framed(group)
        response = backend.http.request(
            "POST",
            "/storeFiles",
            body=lambda: body,
            headers={"Content-Length": str(len(body))},
            what="a batch store",
        )
        _take(backend, group, response.json(), results, counter, refused_ok=False)
        for index, sha1 in zip((i for i, _, _ in group), sha1s):
            if results[index].sha1 != sha1:
                raise IntegrityError(
                    f"the node at {backend.base_url} answered a batch store with sha1 "
                    f"{results[index].sha1}, but the bytes sent hash to {sha1}",
                    "the node or something between is not honest; no URI was given",
                )
    return []


def _framed(group: Group) -> Tuple[bytes, List[str]]:
    """The body of `/storeFiles` for these files: each one's frame and bytes, then the end."""
    pieces: List[bytes] = []
    sha1s: List[str] = []
    for _, path, _ in group:
        with open(path, "rb") as f:
            data = f.read(wire.STORE_BATCH_MAX_OBJECT_BYTES + 1)
        if len(data) > wire.STORE_BATCH_MAX_OBJECT_BYTES:
            raise InvalidInputError(f"{path!r} grew while it was stored", "store it again")
        sha1s.append(hashlib.sha1(data).hexdigest())
        pieces += [wire.encode_frame(wire.batch_file_frame(sha1s[-1], len(data))), data]
    pieces.append(wire.encode_frame(wire.finished_frame()))
    return b"".join(pieces), sha1s


def _take(
    backend: HttpDaemonTransport,
    group: Group,
    answer: Any,
    results: Dict[int, StoredObject],
    counter: BatchProgress,
    refused_ok: bool,
) -> Group:
    """Record the stored objects of an answer; return the files the node could not read
    by path (`refused_ok`), to be sent as bytes. Any other failure is raised."""
    items = answer.get("stored") if isinstance(answer, dict) else None
    if not isinstance(items, list) or len(items) != len(group):
        raise _broken(backend, "answered a batch store with a list that does not match it")
    left: Group = []
    for (index, path, size), item in zip(group, items):
        if not isinstance(item, dict):
            raise _broken(backend, "answered a batch store with an item that is no object")
        if "sha1" in item:
            if not isinstance(item["sha1"], str):
                raise _broken(backend, "answered a batch store with an item without a hash")
            results[index] = StoredObject(item["sha1"], size, item.get("manifestSha1"))
            counter.add(1, size)
            continue
        kind = item.get("errorType")
        error = wire.error_from_type(
            kind if isinstance(kind, str) else None, str(item.get("error"))
        )
        if refused_ok and isinstance(error, InvalidInputError):
            left.append((index, path, size))  # the node may not read it: send the bytes
            continue
        raise type(error)(f"{path}: {error.message}", error.hint)
    return left


def _broken(backend: HttpDaemonTransport, what_it_did: str) -> TransportError:
    return TransportError(
        f"the node at {backend.base_url} {what_it_did}",
        "is it a kachery node, and still running? nothing was given a URI; try again",
    )
