"""What the contract's cases share: the fixture's answer, a tampering wrapper, the client's
checks as the cases use them, and the base class declaring what a backend can do."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, ClassVar, Iterator, Optional

import pytest

from kachery_core.backend.base import Backend, NodeInfo
from kachery_core.content.hashing import Progress
from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.content.uri import ContentUri
from kachery_core.store.base import StoredObject

LARGE_SIZE = CHUNK_SIZE + 1_234_567
"""Just over one manifest chunk: big enough for a manifest, small enough to be quick."""

MISSING_SHA1 = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class ContractBackend:
    """What the suite needs from the fixture: the transport, and a way to put bytes in it."""

    transport: Backend
    seed: Optional[Callable[[bytes], ContentUri]] = None

    def put(self, data: bytes) -> ContentUri:
        if self.seed is not None:
            return self.seed(data)
        return self.transport.store_stream(io.BytesIO(data)).uri()


class TamperingTransport(Backend):
    """A transport that passes everything to `inner`, but alters what comes back: the bytes
    of reads of the objects in `alter_reads` (one byte flipped; an empty object gains one),
    and, with `alter_stores`, the hash in every store or link answer."""

    name = "tampering"

    def __init__(self, inner: Backend, alter_reads: Any = (), alter_stores: bool = False) -> None:
        self.inner = inner
        self.alter_reads = set(alter_reads)
        self.alter_stores = alter_stores

    @classmethod
    def from_config(cls, config: Any) -> Backend:
        raise NotImplementedError("wraps a transport made elsewhere")

    def node_info(self) -> NodeInfo:
        return self.inner.node_info()

    def load_file(self, uri: ContentUri, progress: Optional[Progress] = None) -> str:
        return self.inner.load_file(uri, progress)

    def open_range(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> BinaryIO:
        stream = self.inner.open_range(uri, start, end)
        if uri.sha1 not in self.alter_reads:
            return stream
        with stream:
            data = bytearray(b"".join(iter(lambda: stream.read(1 << 20), b"")))
        if data:
            data[len(data) // 2] ^= 0xFF
        else:
            data = bytearray(b"!")
        return io.BytesIO(bytes(data))

    def _answer(self, stored: StoredObject) -> StoredObject:
        if not self.alter_stores:
            return stored
        wrong = hashlib.sha1(stored.sha1.encode()).hexdigest()
        return StoredObject(wrong, stored.size, stored.manifest_sha1)

    def store_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        return self._answer(self.inner.store_file(path, progress))

    def store_stream(self, stream: BinaryIO, progress: Optional[Progress] = None) -> StoredObject:
        return self._answer(self.inner.store_stream(stream, progress))

    def link_file(self, path: str, progress: Optional[Progress] = None) -> StoredObject:
        return self._answer(self.inner.link_file(path, progress))


class ContractClient:
    """What the Python API and the CLI do with a transport, from the functions `Client`
    uses (`verified_read`, `verified_store`), without the settings a `Client` resolves."""

    def __init__(self, transport: Backend) -> None:
        self.transport = transport

    def load_bytes(self, uri: ContentUri, start: int = 0, end: Optional[int] = None) -> bytes:
        from kachery_client.verified_read import open_verified

        with open_verified(self.transport, uri, start, end) as stream:
            return stream.read()

    def load_pkl(self, uri: ContentUri) -> Any:
        import pickle

        return pickle.loads(self.load_bytes(uri))

    def store_bytes(self, data: bytes) -> StoredObject:
        from kachery_client.verified_store import store_stream_checked

        return store_stream_checked(self.transport, io.BytesIO(data))

    def store_file(self, path: Path) -> StoredObject:
        from kachery_client.verified_store import store_file_checked

        return store_file_checked(self.transport, str(path))

    def link_file(self, path: Path) -> StoredObject:
        from kachery_client.verified_store import link_file_checked

        return link_file_checked(self.transport, str(path))


def contract_client(transport: Backend) -> ContractClient:
    return ContractClient(transport)


def read_all(
    transport: Backend, uri: ContentUri, start: int = 0, end: Optional[int] = None
) -> bytes:
    with transport.open_range(uri, start, end) as stream:
        return b"".join(iter(lambda: stream.read(1 << 20), b""))


def expected_uri(data: bytes) -> str:
    return f"sha1://{hashlib.sha1(data).hexdigest()}"


class ContractCases:
    """What a backend says it can do, and the fixture it must provide; each group of cases
    (files, directories, state) builds on this, and `TransportContract` joins them."""

    can_store: ClassVar[bool] = True
    can_link: ClassVar[bool] = True
    has_mutables: ClassVar[bool] = True
    has_feeds: ClassVar[bool] = True

    @pytest.fixture
    def backend(self) -> Iterator[ContractBackend]:
        raise NotImplementedError("subclasses provide the `backend` fixture")
