"""Loading many objects from a node over HTTP at once (`remote` backend, storage not shared).

Objects already in the cache are not fetched. Small missing ones (up to
`wire.BATCH_MAX_OBJECT_BYTES`) go in batch requests (`POST /downloadFiles`, frames in
`kachery_core/protocol/wire.py`), several batches at a time; larger ones, and those a node leaves out
of a batch, go one by one through the backend's `load_file` (resumable, with manifests).
All of it on the backend's `parallel_transfers` threads over its one connection pool.

Trust: each object's header must name an object asked for, with the size the caller
expects (a directory says it) or at most the batch limit; no more than the announced bytes
are read; the bytes must hash to the SHA-1 before the object is written (staging file,
then rename). A node that answers anything else gets a one-line error naming it, and
nothing unverified is kept. A node without the route (404, older versions) is asked one
object at a time.

    >>> load_files(backend, [parse_uri("sha1://...")], sizes=[4096])   # doctest: +SKIP
    ['/home/me/.cache/kachery/storage/sha1/...']
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Callable, Dict, List, Optional, Sequence

from kachery_core.backend.batch import BatchProgress, BatchReport, run_batch
from kachery_core.content.uri import ContentUri
from kachery_core.errors import IntegrityError, NotFoundError, TransportError
from kachery_core.protocol import wire

from .http_client import ResponseStream

if TYPE_CHECKING:
    from .remote import RemoteDaemonTransport

FILES_PER_REQUEST = 200
"""Objects asked for per batch request: enough that the per-request cost vanishes, few
enough that a tree of a thousand small files still makes several batches to run at once."""
BYTES_PER_REQUEST = 4 << 20
"""Expected bytes per batch request, for the same reason."""
READ_BUFFER = 256 << 10


@dataclass
class Wanted:
    """One distinct object to load, and how many places of the caller's list it fills."""

    uri: ContentUri
    size: Optional[int]
    """What the caller (a directory) says its size is; None when not known."""
    count: int = 1

    @property
    def batchable(self) -> bool:
        if self.uri.chunk_of is not None or self.uri.manifest_sha1 is not None:
            return False
        return self.size is None or self.size <= wire.BATCH_MAX_OBJECT_BYTES


def load_files(
    backend: RemoteDaemonTransport,
    uris: Sequence[ContentUri],
    progress: Optional[BatchReport] = None,
    sizes: Optional[Sequence[int]] = None,
) -> List[str]:
    """The local paths of `uris`' objects, in order, fetching what the cache lacks."""
    counter = BatchProgress(progress)
    storage = backend.storage
    paths: Dict[str, str] = {}
    wanted: Dict[str, Wanted] = {}
    for i, uri in enumerate(uris):
        size = None if sizes is None else sizes[i]
        if uri.sha1 in paths:
            counter.add(1, _size_of(paths[uri.sha1]))
            continue
        if uri.sha1 in wanted:
            wanted[uri.sha1].count += 1
            continue
        found = storage.find(uri.sha1)
        if found is not None:
            paths[uri.sha1] = str(found)
            counter.add(1, _size_of(paths[uri.sha1]))
        else:
            wanted[uri.sha1] = Wanted(uri, size)
    batches_possible = not backend.shared and not backend.channel
    batched = [w for w in wanted.values() if batches_possible and w.batchable]
    alone = [w for w in wanted.values() if not (batches_possible and w.batchable)]
    jobs: List[Callable[[], List[Wanted]]] = [
        _loading_alone(backend, w, counter, paths) for w in alone
    ]
    jobs += [_loading_batch(backend, group, counter, paths) for group in _groups(batched)]
    left = [
        w for done in run_batch(jobs, lambda job: job(), backend.parallel_transfers) for w in done
    ]
    run_batch(
        [_loading_alone(backend, w, counter, paths) for w in left],
        lambda job: job(),
        backend.parallel_transfers,
    )
    return [paths[uri.sha1] for uri in uris]


def _groups(batched: List[Wanted]) -> List[List[Wanted]]:
    groups: List[List[Wanted]] = []
    size = 0
    for want in batched:
        expected = want.size if want.size is not None else wire.BATCH_MAX_OBJECT_BYTES
        if (
            not groups
            or len(groups[-1]) >= FILES_PER_REQUEST
            or size + expected > BYTES_PER_REQUEST
        ):
            groups.append([])
            size = 0
        groups[-1].append(want)
        size += expected
    return groups


def _loading_alone(
    backend: RemoteDaemonTransport, want: Wanted, counter: BatchProgress, paths: Dict[str, str]
) -> Callable[[], List[Wanted]]:
    def load() -> List[Wanted]:
        file_progress = counter.for_file()
        path = backend.load_file(want.uri, file_progress)
        size = _size_of(path)
        file_progress.done(size)
        if want.count > 1:
            counter.add(want.count - 1, size * (want.count - 1))
        paths[want.uri.sha1] = path
        return []

    return load


def _loading_batch(
    backend: RemoteDaemonTransport,
    group: List[Wanted],
    counter: BatchProgress,
    paths: Dict[str, str],
) -> Callable[[], List[Wanted]]:
    """One batch request; returns the objects left to load one by one."""

    def load() -> List[Wanted]:
        if backend.batch_route is False:  # another batch found the route missing
            return group
        doc = {"files": [{"sha1": w.uri.sha1} for w in group]}
        try:
            response = backend.http.request(
                "POST", "/downloadFiles", json_body=doc, stream=True, what="a batch download"
            )
        except NotFoundError:
            backend.batch_route = False  # an older node: one by one from now on
            return group
        backend.batch_route = True
        response.raw.decode_content = True
        what = f"a batch download of {len(group)} objects"
        reader = BatchReader(backend, group, counter, paths, what)
        raw = ResponseStream(response, backend.base_url, what, backend.timeout[1])
        with io.BufferedReader(raw, READ_BUFFER) as body:  # closes the response too
            return reader.read(body)

    return load


class BatchReader:
    """Reads one batch answer, checking every frame, size and hash before keeping anything."""

    def __init__(
        self,
        backend: RemoteDaemonTransport,
        group: List[Wanted],
        counter: BatchProgress,
        paths: Dict[str, str],
        what: str,
    ) -> None:
        self._transport = backend
        self._pending = {w.uri.sha1: w for w in group}
        self._counter = counter
        self._paths = paths
        self._what = what
        self._where = f"the node at {backend.base_url}"

    def read(self, body: BinaryIO) -> List[Wanted]:
        left: List[Wanted] = []
        try:
            for message in wire.read_frames(body.read):
                kind = message.get("type")
                if kind == "file":
                    self._receive(message, body)
                elif kind == "notSent":
                    left.append(self._asked_for(message))
                elif kind == "notFound":
                    want = self._asked_for(message)
                    raise NotFoundError(
                        f"{want.uri} not found by {self._where}: "
                        f"{wire.one_line(str(message.get('error')), 300)}"
                    )
                elif kind == "error":
                    error_type = message.get("errorType")
                    text = f"{self._where} failed {self._what}: {message.get('error')}"
                    raise wire.error_from_type(
                        error_type if isinstance(error_type, str) else None, text
                    )
                elif kind == "finished":
                    break
                # other types: from a newer node, and carry no bytes
            else:
                raise self._broken("ended it without finishing")
        except TransportError as exc:  # a framing error says "the node": name it
            if self._transport.base_url in exc.message:
                raise
            raise self._broken(
                exc.message.replace("the node's answer stream", "its answer")
            ) from None
        if self._pending:
            raise self._broken(f"left out {len(self._pending)} of the objects asked for")
        if body.read(1):
            raise self._broken("sent bytes after its end")
        return left

    def _asked_for(self, message: Dict[str, object]) -> Wanted:
        sha1 = message.get("sha1")
        want = self._pending.pop(sha1, None) if isinstance(sha1, str) else None
        if want is None:
            raise self._broken(f"answered with an object not asked for ({str(sha1)[:60]!r})")
        return want

    def _receive(self, message: Dict[str, object], body: BinaryIO) -> None:
        want = self._asked_for(message)
        size = message.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise self._broken(f"announced {want.uri} with no valid size ({str(size)[:40]})")
        if want.size is not None and size != want.size:
            raise IntegrityError(
                f"{self._where} announced {size} bytes for {want.uri}, which has {want.size}",
                "the node's copy is corrupt or it is not a kachery node; nothing was stored",
            )
        if size > wire.BATCH_MAX_OBJECT_BYTES:
            raise self._broken(f"announced {size} bytes for {want.uri}, over the batch limit")
        data = body.read(size)  # no more than announced
        if len(data) != size:
            raise self._broken(f"ended in the middle of {want.uri}")
        if hashlib.sha1(data).hexdigest() != want.uri.sha1:
            raise IntegrityError(
                f"{want.uri} from {self._where}: received bytes do not hash to it",
                "the node's copy is corrupt or the transfer was damaged; nothing was stored",
            )
        path = _store_verified(self._transport, want.uri.sha1, data)
        self._paths[want.uri.sha1] = path
        self._counter.add(want.count, size * want.count)

    def _broken(self, what_it_did: str) -> TransportError:
        return TransportError(
            f"{self._where} {what_it_did} during {self._what}",
            "is it a kachery node, and still running? nothing unverified was kept; try again",
        )


def _store_verified(backend: RemoteDaemonTransport, sha1: str, data: bytes) -> str:
    """Write bytes already checked against `sha1` as that object (staging file, rename);
    `commit` checks the hash once more on the way in."""
    with backend.storage.object_writer(manifest=False) as writer:
        writer.write(data)
        writer.commit(expected_sha1=sha1)
    return str(backend.storage.layout.object_path(sha1))


def _size_of(path: str) -> int:
    import os

    return os.stat(path).st_size
