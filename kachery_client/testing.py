"""The transport contract, as a pytest test class that any backend can run against itself.

Every built-in backend runs this suite, and a plugin author runs it against their own
backend to show it behaves like the others: same URIs, same bytes, same errors for the
same bad input. Subclass `TransportContract`, say what your backend can do, and provide a
`backend` fixture:

    import pytest
    from kachery_client.testing import ContractBackend, TransportContract

    class TestMyBackend(TransportContract):
        can_store = can_link = has_mutables = has_feeds = False   # read-only

        @pytest.fixture
        def backend(self, tmp_path):
            transport = MyTransport.from_config(...)
            yield ContractBackend(transport, seed=lambda data: publish(data))
            transport.close()

`seed(data)` must put the bytes where the backend can find them and return their
`ContentUri`; for a backend that can store, leave it out and the suite stores through the
backend itself. `pytest` is needed only to run the suite, not to import kachery.

The suite also wraps your transport in `TamperingTransport` (wrong bytes on reads, a wrong
hash in store answers) and checks that the client's checks (`kachery_client.verified_read`,
`verified_store`, which `Client` and the CLI use) refuse both with `IntegrityError`. Nothing more is needed from the fixture.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, ClassVar, Dict, Iterator, Optional, Sequence

import pytest

from kachery_core.backend.base import DaemonTransport, NodeInfo, SubfeedWatch
from kachery_core.content.hashing import Progress
from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.content.uri import ContentUri, DirUri, parse_uri
from kachery_core.errors import (
    IntegrityError,
    InvalidInputError,
    KacheryError,
    NotFoundError,
    UnsupportedOperation,
)
from kachery_core.store.base import StoredObject

LARGE_SIZE = CHUNK_SIZE + 1_234_567
"""Just over one manifest chunk: big enough for a manifest, small enough to be quick."""

MISSING_SHA1 = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class ContractBackend:
    """What the suite needs from the fixture: the transport, and a way to put bytes in it."""

    transport: DaemonTransport
    seed: Optional[Callable[[bytes], ContentUri]] = None

    def put(self, data: bytes) -> ContentUri:
        if self.seed is not None:
            return self.seed(data)
        return self.transport.store_stream(io.BytesIO(data)).uri()


class TamperingTransport(DaemonTransport):
    """A transport that passes everything to `inner`, but alters what comes back: the bytes
    of reads of the objects in `alter_reads` (one byte flipped; an empty object gains one),
    and, with `alter_stores`, the hash in every store or link answer."""

    name = "tampering"

    def __init__(
        self, inner: DaemonTransport, alter_reads: Any = (), alter_stores: bool = False
    ) -> None:
        self.inner = inner
        self.alter_reads = set(alter_reads)
        self.alter_stores = alter_stores

    @classmethod
    def from_config(cls, config: Any) -> DaemonTransport:
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


class _Client:
    """What the Python API and the CLI do with a transport, built from the same core
    functions (`verified_read`, `verified_store`; the core imports no higher layer)."""

    def __init__(self, transport: DaemonTransport) -> None:
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


def _client(transport: DaemonTransport) -> _Client:
    return _Client(transport)


def _read_all(
    transport: DaemonTransport, uri: ContentUri, start: int = 0, end: Optional[int] = None
) -> bytes:
    with transport.open_range(uri, start, end) as stream:
        return b"".join(iter(lambda: stream.read(1 << 20), b""))


def _expected_uri(data: bytes) -> str:
    return f"sha1://{hashlib.sha1(data).hexdigest()}"


def _directory_tree() -> Dict[str, bytes]:
    """A small tree: nested folders, an empty file, a non-ASCII name."""
    return {
        "a.txt": b"alpha",
        "séance.bin": os.urandom(3000),
        "sub/b.bin": os.urandom(5000),
        "sub/deeper/c.txt": b"deep",
        "z.dat": b"",
    }


def _canonical_directory(files: Dict[str, bytes], empty_dirs: Sequence[str] = ()) -> bytes:
    """The directory object for `files`, written here from the protocol's rules (sorted
    keys, compact separators, UTF-8), not by the code under test."""
    doc: Dict[str, Any] = {"dirs": {}, "files": {}}

    def folder(names: Sequence[str]) -> Dict[str, Any]:
        node = doc
        for name in names:
            node = node["dirs"].setdefault(name, {"dirs": {}, "files": {}})
        return node

    for rel in empty_dirs:
        folder(rel.split("/"))
    for rel, data in files.items():
        *dirs, name = rel.split("/")
        folder(dirs)["files"][name] = {"sha1": hashlib.sha1(data).hexdigest(), "size": len(data)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def _files_below(root: Path) -> Dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class TransportContract:
    """The behaviour every kachery backend shares. Subclasses provide `backend`."""

    can_store: ClassVar[bool] = True
    can_link: ClassVar[bool] = True
    has_mutables: ClassVar[bool] = True
    has_feeds: ClassVar[bool] = True

    @pytest.fixture
    def backend(self) -> Iterator[ContractBackend]:
        raise NotImplementedError("subclasses provide the `backend` fixture")

    # -- describing itself ---------------------------------------------------------

    def test_node_info_names_the_backend(self, backend: ContractBackend) -> None:
        info = backend.transport.node_info()
        assert isinstance(info, NodeInfo)
        assert info.backend == backend.transport.name
        assert info.node_id is None or len(info.node_id) == 64

    # -- loading ---------------------------------------------------------------------

    def test_load_file_gives_the_bytes(self, backend: ContractBackend) -> None:
        data = os.urandom(100_000)
        uri = backend.put(data)
        assert str(uri).startswith(_expected_uri(data))
        path = backend.transport.load_file(uri)
        assert Path(path).read_bytes() == data
        assert Path(backend.transport.load_file(uri)).read_bytes() == data  # again: same answer

    def test_empty_file(self, backend: ContractBackend) -> None:
        uri = backend.put(b"")
        assert Path(backend.transport.load_file(uri)).read_bytes() == b""
        assert _read_all(backend.transport, uri) == b""

    def test_label_and_query_do_not_matter(self, backend: ContractBackend) -> None:
        data = b"labels are only names"
        uri = backend.put(data)
        labelled = parse_uri(f"{_expected_uri(data)}/some/label.txt")
        assert Path(backend.transport.load_file(labelled)).read_bytes() == data
        assert uri.sha1 == labelled.sha1

    def test_byte_ranges(self, backend: ContractBackend) -> None:
        data = os.urandom(300_000)
        uri = backend.put(data)
        for start, end in [(0, None), (0, 1), (1000, 2000), (299_999, 300_000), (5, 5)]:
            assert _read_all(backend.transport, uri, start, end) == data[start:end]

    def test_range_outside_the_file_is_invalid_input(self, backend: ContractBackend) -> None:
        uri = backend.put(b"ten bytes!")
        for start, end in [(0, 11), (8, 4)]:
            with pytest.raises(InvalidInputError) as caught:
                _read_all(backend.transport, uri, start, end)
            assert f"{start}-{end}" in str(caught.value)

    def test_missing_object_is_not_found(self, backend: ContractBackend) -> None:
        uri = parse_uri(f"sha1://{MISSING_SHA1}/missing.bin")
        with pytest.raises(NotFoundError) as caught:
            backend.transport.load_file(uri)
        assert MISSING_SHA1 in str(caught.value)
        with pytest.raises(NotFoundError):
            _read_all(backend.transport, uri)

    def test_large_file_with_manifest(self, backend: ContractBackend) -> None:
        data = os.urandom(LARGE_SIZE)
        uri = backend.put(data)
        assert uri.manifest_sha1 is not None, "files over 20,000,000 bytes get a manifest"
        path = backend.transport.load_file(uri)
        with open(path, "rb") as f:
            assert hashlib.sha1(f.read()).hexdigest() == uri.sha1
        across = (CHUNK_SIZE - 10, CHUNK_SIZE + 10)  # a range across the chunk boundary
        assert _read_all(backend.transport, uri, *across) == data[across[0] : across[1]]

    # -- what the client checks, whatever the backend ----------------------------------

    def test_client_reads_check_out(self, backend: ContractBackend) -> None:
        data = os.urandom(120_000)
        uri = backend.put(data)
        client = _client(backend.transport)
        assert client.load_bytes(uri) == data
        assert client.load_bytes(uri, 1000, 2000) == data[1000:2000]
        assert client.load_bytes(uri, 5, 5) == b""
        with pytest.raises(InvalidInputError):
            client.load_bytes(uri, 0, len(data) + 1)

    def test_client_refuses_wrong_bytes(self, backend: ContractBackend) -> None:
        import pickle

        data = pickle.dumps({"honest": os.urandom(8).hex()})
        uri = backend.put(data)
        client = _client(TamperingTransport(backend.transport, alter_reads=[uri.sha1]))
        for read in (
            lambda: client.load_bytes(uri),
            lambda: client.load_pkl(uri),
            lambda: client.load_bytes(uri, 2, 10),
        ):
            with pytest.raises(IntegrityError) as caught:
                read()
            assert uri.sha1 in str(caught.value) and "hash to" in str(caught.value)
            assert "\n" not in str(caught.value)

    def test_client_refuses_wrong_chunks(self, backend: ContractBackend) -> None:
        data = os.urandom(LARGE_SIZE)
        uri = backend.put(data)
        client = _client(backend.transport)
        across = (CHUNK_SIZE - 10, CHUNK_SIZE + 10)
        assert client.load_bytes(uri, *across) == data[across[0] : across[1]]
        tampered = _client(TamperingTransport(backend.transport, alter_reads=[uri.sha1]))
        with pytest.raises(IntegrityError) as caught:
            tampered.load_bytes(uri, *across)
        assert f"(bytes 0-{CHUNK_SIZE})" in str(caught.value)

    def test_client_refuses_a_wrong_store_hash(
        self, backend: ContractBackend, tmp_path: Path
    ) -> None:
        if not self.can_store:
            return
        source = tmp_path / "answered.bin"
        data = os.urandom(30_000)
        source.write_bytes(data)
        client = _client(TamperingTransport(backend.transport, alter_stores=True))
        stores = [lambda: client.store_bytes(data), lambda: client.store_file(source)]
        if self.can_link:
            stores.append(lambda: client.link_file(source))
        for store in stores:
            with pytest.raises(IntegrityError) as caught:
                store()
            assert hashlib.sha1(data).hexdigest() in str(caught.value)  # both hashes named
            assert "answered" in str(caught.value)

    # -- storing ---------------------------------------------------------------------

    def test_store_file_gives_the_content_uri(
        self, backend: ContractBackend, tmp_path: Path
    ) -> None:
        source = tmp_path / "data.bin"
        data = os.urandom(50_000)
        source.write_bytes(data)
        if not self.can_store:
            with pytest.raises(UnsupportedOperation):
                backend.transport.store_file(str(source))
            return
        stored = backend.transport.store_file(str(source))
        assert stored.sha1 == hashlib.sha1(data).hexdigest() and stored.size == len(data)
        assert Path(backend.transport.load_file(stored.uri())).read_bytes() == data
        again = backend.transport.store_file(str(source))
        assert again.sha1 == stored.sha1  # storing twice is harmless

    def test_store_stream(self, backend: ContractBackend) -> None:
        data = os.urandom(70_000)
        if not self.can_store:
            with pytest.raises(UnsupportedOperation):
                backend.transport.store_stream(io.BytesIO(data))
            return
        stored = backend.transport.store_stream(io.BytesIO(data))
        assert stored.sha1 == hashlib.sha1(data).hexdigest()
        assert _read_all(backend.transport, stored.uri()) == data

    def test_store_missing_file_is_an_error(self, backend: ContractBackend, tmp_path: Path) -> None:
        missing = tmp_path / "no-such-file.bin"
        expected = KacheryError if self.can_store else UnsupportedOperation
        with pytest.raises(expected) as caught:
            backend.transport.store_file(str(missing))
        if self.can_store:
            assert "no-such-file.bin" in str(caught.value)

    def test_link_file(self, backend: ContractBackend, tmp_path: Path) -> None:
        source = tmp_path / "linked.bin"
        data = os.urandom(40_000)
        source.write_bytes(data)
        if not self.can_link:
            with pytest.raises(UnsupportedOperation):
                backend.transport.link_file(str(source))
            return
        stored = backend.transport.link_file(str(source))
        assert stored.sha1 == hashlib.sha1(data).hexdigest()
        assert Path(backend.transport.load_file(stored.uri())).read_bytes() == data

    def test_declared_capabilities(self, backend: ContractBackend) -> None:
        """What the interface declares, the client reads as declared: a thread count, a
        flag, a batch load giving paths in order, and the local store loads read from."""
        t = backend.transport
        assert isinstance(t.parallel_transfers, int) and t.parallel_transfers >= 1
        assert isinstance(t.stores_in_process, bool)
        blobs = [os.urandom(3_000 + n) for n in range(3)]
        uris = [backend.put(data) for data in blobs]
        paths = t.load_files(uris, None, [len(data) for data in blobs])
        assert [Path(path).read_bytes() for path in paths] == blobs
        store = t.local_store()
        if store is not None:  # then `verify` checks it: what a load read must be in it
            assert all(store.find(uri.sha1) is not None for uri in uris)

    # -- directories (sha1dir://) --------------------------------------------------------
    #
    # A backend gets directories for free: `kachery_client.directories.operations` stores, reads and
    # materializes trees through the transport's ordinary methods. These cases show that
    # it does so for yours (through its `load_files` and `parallel_transfers`, as declared).

    def test_directory_read_and_materialize(self, backend: ContractBackend, tmp_path: Path) -> None:
        """A tree put in the backend file by file, with its directory object, reads back."""
        from kachery_client.directories.operations import (
            materialize,
            read_directory,
            resolve,
            resolve_file,
        )
        from kachery_core.content.directory import Directory

        expected = _directory_tree()
        uris = {rel: backend.put(data) for rel, data in expected.items()}
        document = _canonical_directory(expected, empty_dirs=["empty"])
        root = backend.put(document)
        assert root.sha1 == hashlib.sha1(document).hexdigest()
        uri = DirUri(root.sha1, "contract")
        directory = read_directory(backend.transport, uri)
        assert directory.to_bytes() == document
        assert dict((("/".join(p), e.sha1) for p, e in directory.walk())) == {
            rel: u.sha1 for rel, u in uris.items()
        }
        found = resolve(backend.transport, uri.join("sub", "b.bin"))
        assert isinstance(found, ContentUri) and found.sha1 == uris["sub/b.bin"].sha1
        assert isinstance(resolve(backend.transport, uri.join("sub")), Directory)
        inside = resolve_file(backend.transport, uri.join("sub", "deeper", "c.txt"))
        assert (
            Path(backend.transport.load_file(inside)).read_bytes() == expected["sub/deeper/c.txt"]
        )
        with pytest.raises(NotFoundError):
            resolve(backend.transport, uri.join("no-such-file"))
        with pytest.raises(InvalidInputError):
            resolve_file(backend.transport, uri.join("sub"))
        dest = tmp_path / "materialized"
        assert materialize(backend.transport, uri, dest) == dest
        assert _files_below(dest) == expected
        assert (dest / "empty").is_dir()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging
        copies = tmp_path / "copies"
        materialize(backend.transport, uri.join("sub"), copies, copy=True)
        assert _files_below(copies) == {
            rel[len("sub/") :]: data for rel, data in expected.items() if rel.startswith("sub/")
        }

    def test_directory_store_tree(self, backend: ContractBackend, tmp_path: Path) -> None:
        """`store_tree` through the backend gives the canonical URI, and the tree loads."""
        from kachery_client.directories.operations import (
            materialize,
            read_directory,
            resolve_file,
            store_tree,
        )
        from kachery_core.content.uri import parse_dir_uri

        expected = _directory_tree()
        source = tmp_path / "tree"
        for rel, data in expected.items():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_bytes(data)
        (source / "empty").mkdir()
        if not self.can_store:
            with pytest.raises(UnsupportedOperation):
                store_tree(backend.transport, source)
            return
        document = _canonical_directory(expected, empty_dirs=["empty"])
        uri = store_tree(backend.transport, source)
        assert str(uri) == f"sha1dir://{hashlib.sha1(document).hexdigest()}.tree"
        assert parse_dir_uri(str(uri)) == uri
        assert read_directory(backend.transport, uri).to_bytes() == document
        inside = resolve_file(backend.transport, uri.join("sub", "b.bin"))
        assert Path(backend.transport.load_file(inside)).read_bytes() == expected["sub/b.bin"]
        dest = tmp_path / "out"
        materialize(backend.transport, uri, dest)
        assert _files_below(dest) == expected
        if self.can_link:
            linked = store_tree(backend.transport, source, "linked", link=True)
            assert linked.sha1 == uri.sha1 and linked.label == "linked"

    def test_directory_object_is_checked(self, backend: ContractBackend) -> None:
        """Wrong bytes for a directory object are an `IntegrityError`, never a tree."""
        from kachery_client.directories.operations import read_directory

        document = _canonical_directory({"f.txt": b"f"})
        root = backend.put(document)
        tampered = TamperingTransport(backend.transport, alter_reads=[root.sha1])
        with pytest.raises(IntegrityError) as caught:
            read_directory(tampered, DirUri(root.sha1, "x"))
        assert root.sha1 in str(caught.value)
        escaping = backend.put(b'{"files": {"../x": {"size": 1, "sha1": "' + b"0" * 40 + b'"}}}')
        with pytest.raises(IntegrityError):
            read_directory(backend.transport, DirUri(escaping.sha1))

    # -- mutables and feeds ------------------------------------------------------------

    def test_mutables(self, backend: ContractBackend) -> None:
        t = backend.transport
        key = {"contract": os.urandom(8).hex()}
        if not self.has_mutables:
            with pytest.raises(UnsupportedOperation):
                t.mutable_get(key)
            return
        assert t.mutable_get(key) == (False, None)
        t.mutable_set(key, {"value": [1, 2, 3]})
        assert t.mutable_get(key) == (True, {"value": [1, 2, 3]})
        t.mutable_set(key, "second", update=False)  # no update: the first value stays
        assert t.mutable_get(key) == (True, {"value": [1, 2, 3]})
        t.mutable_set(key, "third")
        assert t.mutable_get(key) == (True, "third")
        t.mutable_delete(key)
        assert t.mutable_get(key) == (False, None)

    def test_feeds(self, backend: ContractBackend) -> None:
        t = backend.transport
        if not self.has_feeds:
            with pytest.raises(UnsupportedOperation):
                t.create_feed()
            return
        name = f"contract-{os.urandom(4).hex()}"
        feed_id = t.create_feed(name)
        assert t.get_feed_id(name) == feed_id
        subfeed = hashlib.sha1(b"main").hexdigest()
        assert t.get_num_messages(feed_id, subfeed) == 0
        t.append_messages(feed_id, subfeed, [{"n": 1}, {"n": 2}])
        assert t.get_num_messages(feed_id, subfeed) == 2
        got = t.watch_for_new_messages({"w": SubfeedWatch(feed_id, subfeed, 1)}, wait_msec=100)
        assert got == {"w": [{"n": 2}]}
        t.delete_feed(feed_id)
        assert t.get_feed_id(name) is None

    # -- lifecycle ---------------------------------------------------------------------

    def test_close_twice(self, backend: ContractBackend) -> None:
        backend.transport.close()
        backend.transport.close()
