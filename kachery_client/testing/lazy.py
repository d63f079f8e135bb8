"""Lazy reads: what `kc.open` and fsspec need of a backend (part of `TransportContract`).

It checks, through the backend's own `open_range`: a seekable file over small and large
objects with the right bytes at any offset, a large object read by chunk (not whole),
several threads at once, and that a chunk altered on the way raises `IntegrityError`
naming the chunk with none of its bytes returned and nothing kept in the cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
from pathlib import Path
from typing import Any, List

import pytest

from kachery_client.lazy.file import open_uri
from kachery_client.lazy.pieces import Storages, lazy_storages
from kachery_client.testing.support import ContractBackend, TamperingTransport
from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.content.uri import ContentUri
from kachery_core.errors import IntegrityError
from kachery_core.store.local import LocalStorage

LARGE = 2 * CHUNK_SIZE + 1_000_000  # three chunks, the last short


class LazyCases:
    """Lazy, verified reads on a backend. Subclasses provide `backend`."""

    @pytest.fixture
    def backend(self) -> Any:
        raise NotImplementedError("subclasses provide the `backend` fixture")

    @pytest.fixture
    def large_data(self) -> bytes:
        return os.urandom(LARGE)

    def _storages(self, backend: ContractBackend, tmp_path: Path) -> Storages:
        """The backend's own answer, with a private cache where it would use the user's."""
        hook = getattr(backend.transport, "lazy_storages", None)
        if hook is not None:
            return lazy_storages(backend.transport)
        return None, LocalStorage(tmp_path / "lazy-cache")

    def test_lazy_open_of_a_small_object_seeks_and_reads(
        self, backend: ContractBackend, tmp_path: Path
    ) -> None:
        data = os.urandom(100_000)
        uri = backend.put(data)
        with open_uri(backend.transport, uri, storages=self._storages(backend, tmp_path)) as f:
            assert f.seekable() and f.readable() and f.size == len(data)
            f.seek(-100, io.SEEK_END)
            assert f.read() == data[-100:]
            f.seek(500)
            buffer = bytearray(1000)
            assert f.readinto(buffer) == 1000 and bytes(buffer) == data[500:1500]

    def test_lazy_open_of_a_large_object_reads_any_offset(
        self, backend: ContractBackend, large_data: bytes, tmp_path: Path
    ) -> None:
        uri = backend.put(large_data)
        assert uri.manifest_sha1 is not None, "a large store answers with its manifest"
        rng = random.Random(3)
        with open_uri(backend.transport, uri, storages=self._storages(backend, tmp_path)) as f:
            assert f.size == LARGE
            for start in [
                CHUNK_SIZE - 10,
                2 * CHUNK_SIZE - 1,
                *(rng.randrange(LARGE) for _ in range(20)),
            ]:
                f.seek(start)
                assert f.read(65536) == large_data[start : start + 65536]

    def test_lazy_reads_from_threads_agree(
        self, backend: ContractBackend, large_data: bytes, tmp_path: Path
    ) -> None:
        uri = backend.put(large_data)
        storages = self._storages(backend, tmp_path)
        errors: List[BaseException] = []

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            try:
                with open_uri(backend.transport, uri, storages=storages) as f:
                    for _ in range(10):
                        start = rng.randrange(LARGE)
                        f.seek(start)
                        assert f.read(4096) == large_data[start : start + 4096]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

    def test_lazy_read_refuses_an_altered_chunk(
        self, backend: ContractBackend, large_data: bytes, tmp_path: Path
    ) -> None:
        uri = backend.put(large_data)
        tampering = TamperingTransport(backend.transport, alter_reads={uri.sha1})
        cache = LocalStorage(tmp_path / "tampered-cache")
        chunk_1 = hashlib.sha1(large_data[CHUNK_SIZE : 2 * CHUNK_SIZE]).hexdigest()
        with open_uri(tampering, uri, storages=(None, cache)) as f:
            f.seek(CHUNK_SIZE)
            buffer = bytearray(100)
            with pytest.raises(IntegrityError, match="chunk 1 "):
                f.readinto(buffer)
            assert bytes(buffer) == bytes(100)
        assert not cache.has(chunk_1)

    def test_lazy_open_names_a_missing_object(
        self, backend: ContractBackend, tmp_path: Path
    ) -> None:
        missing = ContentUri(hashlib.sha1(b"never stored " + os.urandom(8)).hexdigest())
        with pytest.raises(FileNotFoundError, match=missing.sha1):
            open_uri(backend.transport, missing, storages=self._storages(backend, tmp_path))
