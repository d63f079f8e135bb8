"""Folders through the Python API, in-process on the embedded backend: `store_dir`,
`read_dir`, `load_dir`, `store_files`, and the loaders on paths inside `sha1dir://`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

import kachery_client as kc


def _tree(root: Path) -> Path:
    (root / "arrays").mkdir(parents=True)
    np.save(root / "arrays" / "x.npy", np.arange(10, dtype=np.int32))
    (root / "params.json").write_text('{"rate": 30000, "name": "séance"}')
    (root / "notes.txt").write_text("hello\n")
    (root / "empty").mkdir()
    return root


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_module_functions(kenv, tmp_path: Path) -> None:
    root = _tree(tmp_path / "rec")
    uri = kc.store_dir(root)
    assert uri.startswith("sha1dir://") and uri.endswith(".rec")
    assert kc.store_dir(str(root), label="v2.0").endswith(".v2.0")
    doc = kc.read_dir(uri)
    assert sorted(doc) == ["dirs", "files"]
    assert doc["files"]["notes.txt"] == {"size": 6, "sha1": _sha1(root / "notes.txt")}
    assert doc["dirs"]["empty"] == {"dirs": {}, "files": {}}
    assert kc.read_dir(f"{uri}/arrays") == {
        "dirs": {},
        "files": {"x.npy": {"size": 168, "sha1": _sha1(root / "arrays" / "x.npy")}},
    }
    assert kc.load_text(f"{uri}/notes.txt") == "hello\n"
    assert kc.load_json(f"{uri}/params.json") == {"rate": 30000, "name": "séance"}
    assert np.array_equal(kc.load_npy(f"{uri}/arrays/x.npy"), np.arange(10, dtype=np.int32))
    assert kc.load_bytes(f"{uri}/notes.txt", 1, 3) == b"el"
    assert Path(kc.load_file(f"{uri}/notes.txt")).read_bytes() == b"hello\n"
    dest = tmp_path / "copy"
    assert kc.load_dir(uri, dest) == str(dest)
    assert (dest / "notes.txt").read_text() == "hello\n"
    assert (dest / "empty").is_dir()
    with pytest.raises(kc.InvalidInputError):
        kc.load_dir(uri, dest)  # not empty
    kc.load_dir(uri, dest, force=True, copy=True)
    assert os.stat(dest / "notes.txt").st_mode & 0o200  # a writable copy now
    with pytest.raises(kc.InvalidInputError):
        kc.read_dir(f"{uri}/notes.txt")
    with pytest.raises(kc.InvalidInputError):
        kc.load_text(f"{uri}/arrays")
    with pytest.raises(kc.NotFoundError):
        kc.load_text(f"{uri}/nope.txt")


def test_store_files_in_order(kenv, tmp_path: Path) -> None:
    paths = []
    for name in ("b.txt", "a.txt", "c.txt"):
        (tmp_path / name).write_text(name)
        paths.append(tmp_path / name)
    uris = kc.store_files(paths)
    assert uris == [
        f"sha1://{hashlib.sha1(n.encode()).hexdigest()}/{n}" for n in ("b.txt", "a.txt", "c.txt")
    ]
    linked = kc.store_files([str(p) for p in paths], link=True)
    assert linked == uris
    assert kc.load_file(linked[0]) in (str(paths[0].resolve()), kc.load_file(uris[0]))


def test_client_methods_and_progress(kenv, tmp_path: Path) -> None:
    root = _tree(tmp_path / "rec")
    reports: List[Tuple[int, int]] = []
    with kc.Client("local") as client:
        uri = client.store_dir(root, progress=lambda files, size: reports.append((files, size)))
        total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        assert reports[-1] == (3, total)
        assert client.read_dir(uri) == kc.read_dir(uri)
        loads: List[Tuple[int, int]] = []
        dest = client.load_dir(uri, tmp_path / "out", progress=lambda f, s: loads.append((f, s)))
        assert loads[-1] == (3, total)
        assert Path(dest, "params.json").read_bytes() == (root / "params.json").read_bytes()
        files = client.store_files([root / "notes.txt", root / "params.json"])
        assert client.load_text(files[0]) == "hello\n"
        linked = client.store_dir(root, link=True)
        assert linked == uri
        assert client.load_json(f"{uri}/params.json")["rate"] == 30000


def test_tree_problems_error(kenv, tmp_path: Path) -> None:
    root = _tree(tmp_path / "rec")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(root / "arrays" / "pipe")
    storage = Path(kenv["KACHERY_STORAGE_DIR"])
    with pytest.raises(kc.FolderProblemsError) as caught:
        kc.store_dir(root)
    problems = caught.value.problems
    assert len(problems) == 2
    assert "pipe" in problems[0] and "FIFO" in problems[0]
    assert "dangling" in problems[1] and "broken symbolic link" in problems[1]
    assert isinstance(caught.value, kc.InvalidInputError)
    stored = [p for p in (storage / "sha1").rglob("*") if p.is_file()]
    assert stored == []  # refused before a byte was stored
    uri = kc.default_client().store_dir(root, skip_errors=True)
    assert sorted(kc.read_dir(uri)["files"]) == ["notes.txt", "params.json"]
    with pytest.raises(kc.InvalidUriError):
        kc.store_dir(root, label="a/b", skip_errors=True)
