"""The contract for directories (`sha1dir://`): a backend gets them for free, since
`kachery_client.directories.operations` works through the ordinary methods; these cases
show that it does so for each backend (through its `load_files` and `parallel_transfers`,
as declared)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Sequence

import pytest

from kachery_client.testing.support import (
    ContractBackend,
    ContractCases,
    TamperingTransport,
)
from kachery_core.content.uri import ContentUri, DirUri
from kachery_core.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    UnsupportedOperation,
)


def directory_tree() -> Dict[str, bytes]:
    """A small tree: nested folders, an empty file, a non-ASCII name."""
    return {
        "a.txt": b"alpha",
        "séance.bin": os.urandom(3000),
        "sub/b.bin": os.urandom(5000),
        "sub/deeper/c.txt": b"deep",
        "z.dat": b"",
    }


def canonical_directory(files: Dict[str, bytes], empty_dirs: Sequence[str] = ()) -> bytes:
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


def files_below(root: Path) -> Dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class DirectoryCases(ContractCases):
    """Directories stored, read, resolved and materialized through the backend."""

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

        expected = directory_tree()
        uris = {rel: backend.put(data) for rel, data in expected.items()}
        document = canonical_directory(expected, empty_dirs=["empty"])
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
        assert files_below(dest) == expected
        assert (dest / "empty").is_dir()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging
        copies = tmp_path / "copies"
        materialize(backend.transport, uri.join("sub"), copies, copy=True)
        assert files_below(copies) == {
            rel[len("sub/") :]: data for rel, data in expected.items() if rel.startswith("sub/")
        }

    def test_directory_store_tree(self, backend: ContractBackend, tmp_path: Path) -> None:
        """`store_folder` through the backend gives the canonical URI, and the tree loads."""
        from kachery_client.directories.operations import (
            materialize,
            read_directory,
            resolve_file,
            store_folder,
        )
        from kachery_core.content.uri import parse_dir_uri

        expected = directory_tree()
        source = tmp_path / "tree"
        for rel, data in expected.items():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_bytes(data)
        (source / "empty").mkdir()
        if not self.can_store:
            with pytest.raises(UnsupportedOperation):
                store_folder(backend.transport, source)
            return
        document = canonical_directory(expected, empty_dirs=["empty"])
        uri = store_folder(backend.transport, source)
        assert str(uri) == f"sha1dir://{hashlib.sha1(document).hexdigest()}.tree"
        assert parse_dir_uri(str(uri)) == uri
        assert read_directory(backend.transport, uri).to_bytes() == document
        inside = resolve_file(backend.transport, uri.join("sub", "b.bin"))
        assert Path(backend.transport.load_file(inside)).read_bytes() == expected["sub/b.bin"]
        dest = tmp_path / "out"
        materialize(backend.transport, uri, dest)
        assert files_below(dest) == expected
        if self.can_link:
            linked = store_folder(backend.transport, source, "linked", link=True)
            assert linked.sha1 == uri.sha1 and linked.label == "linked"

    def test_directory_object_is_checked(self, backend: ContractBackend) -> None:
        """Wrong bytes for a directory object are an `IntegrityError`, never a tree."""
        from kachery_client.directories.operations import read_directory

        document = canonical_directory({"f.txt": b"f"})
        root = backend.put(document)
        tampered = TamperingTransport(backend.transport, alter_reads=[root.sha1])
        with pytest.raises(IntegrityError) as caught:
            read_directory(tampered, DirUri(root.sha1, "x"))
        assert root.sha1 in str(caught.value)
        escaping = backend.put(b'{"files": {"../x": {"size": 1, "sha1": "' + b"0" * 40 + b'"}}}')
        with pytest.raises(IntegrityError):
            read_directory(backend.transport, DirUri(escaping.sha1))
