"""The contract for single files: describing the node, loading, ranges, the client's
checks of what a backend answers, storing and linking."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from kachery_client.testing.support import (
    LARGE_SIZE,
    MISSING_SHA1,
    ContractBackend,
    ContractCases,
    TamperingTransport,
    contract_client,
    expected_uri,
    read_all,
)
from kachery_core.backend.base import NodeInfo
from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.content.uri import parse_uri
from kachery_core.errors import (
    IntegrityError,
    InvalidInputError,
    KacheryError,
    NotFoundError,
    UnsupportedOperation,
)


class FileCases(ContractCases):
    """Files: the same URIs, bytes and errors for the same input, whatever the backend."""

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
        assert str(uri).startswith(expected_uri(data))
        path = backend.transport.load_file(uri)
        assert Path(path).read_bytes() == data
        assert Path(backend.transport.load_file(uri)).read_bytes() == data  # again: same answer

    def test_empty_file(self, backend: ContractBackend) -> None:
        uri = backend.put(b"")
        assert Path(backend.transport.load_file(uri)).read_bytes() == b""
        assert read_all(backend.transport, uri) == b""

    def test_label_and_query_do_not_matter(self, backend: ContractBackend) -> None:
        data = b"labels are only names"
        uri = backend.put(data)
        labelled = parse_uri(f"{expected_uri(data)}/some/label.txt")
        assert Path(backend.transport.load_file(labelled)).read_bytes() == data
        assert uri.sha1 == labelled.sha1

    def test_byte_ranges(self, backend: ContractBackend) -> None:
        data = os.urandom(300_000)
        uri = backend.put(data)
        for start, end in [(0, None), (0, 1), (1000, 2000), (299_999, 300_000), (5, 5)]:
            assert read_all(backend.transport, uri, start, end) == data[start:end]

    def test_range_outside_the_file_is_invalid_input(self, backend: ContractBackend) -> None:
        uri = backend.put(b"ten bytes!")
        for start, end in [(0, 11), (8, 4)]:
            with pytest.raises(InvalidInputError) as caught:
                read_all(backend.transport, uri, start, end)
            assert f"{start}-{end}" in str(caught.value)

    def test_missing_object_is_not_found(self, backend: ContractBackend) -> None:
        uri = parse_uri(f"sha1://{MISSING_SHA1}/missing.bin")
        with pytest.raises(NotFoundError) as caught:
            backend.transport.load_file(uri)
        assert MISSING_SHA1 in str(caught.value)
        with pytest.raises(NotFoundError):
            read_all(backend.transport, uri)

    def test_large_file_with_manifest(self, backend: ContractBackend) -> None:
        data = os.urandom(LARGE_SIZE)
        uri = backend.put(data)
        assert uri.manifest_sha1 is not None, "files over 20,000,000 bytes get a manifest"
        path = backend.transport.load_file(uri)
        with open(path, "rb") as f:
            assert hashlib.sha1(f.read()).hexdigest() == uri.sha1
        across = (CHUNK_SIZE - 10, CHUNK_SIZE + 10)  # a range across the chunk boundary
        assert read_all(backend.transport, uri, *across) == data[across[0] : across[1]]

    # -- what the client checks, whatever the backend ----------------------------------

    def test_client_reads_check_out(self, backend: ContractBackend) -> None:
        data = os.urandom(120_000)
        uri = backend.put(data)
        client = contract_client(backend.transport)
        assert client.load_bytes(uri) == data
        assert client.load_bytes(uri, 1000, 2000) == data[1000:2000]
        assert client.load_bytes(uri, 5, 5) == b""
        with pytest.raises(InvalidInputError):
            client.load_bytes(uri, 0, len(data) + 1)

    def test_client_refuses_wrong_bytes(self, backend: ContractBackend) -> None:
        import pickle

        data = pickle.dumps({"honest": os.urandom(8).hex()})
        uri = backend.put(data)
        client = contract_client(TamperingTransport(backend.transport, alter_reads=[uri.sha1]))
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
        client = contract_client(backend.transport)
        across = (CHUNK_SIZE - 10, CHUNK_SIZE + 10)
        assert client.load_bytes(uri, *across) == data[across[0] : across[1]]
        tampered = contract_client(TamperingTransport(backend.transport, alter_reads=[uri.sha1]))
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
        client = contract_client(TamperingTransport(backend.transport, alter_stores=True))
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
        assert read_all(backend.transport, stored.uri()) == data

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
