"""Storing folders through the CLI (`store-file -r`, `link-file -r`): URIs, labels, what
is refused before anything is stored; real subprocesses on the embedded `local` backend.
Reading them back is in test_cli_datasets_read.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_trees import (
    TREE,
    expected_dir_sha1,
    files_below,
    object_names,
    sha1_of,
    storage_of,
    store_folder,
    write_tree,
)

# -- storing ------------------------------------------------------------------------------


def test_several_paths_print_uris_in_order(cli, tmp_path: Path) -> None:
    one, two, three = (tmp_path / n for n in ("one.txt", "two.txt", "three.txt"))
    for i, p in enumerate((one, two, three)):
        p.write_bytes(f"file {i}".encode())
    folder = write_tree(tmp_path / "data")
    result = cli("store-file", "-r", str(one), str(two), str(folder), str(three))
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == [
        f"sha1://{sha1_of(b'file 0')}/one.txt",
        f"sha1://{sha1_of(b'file 1')}/two.txt",
        f"sha1dir://{expected_dir_sha1(TREE)}.data",
        f"sha1://{sha1_of(b'file 2')}/three.txt",
    ]
    plain = cli("store-file", str(three), str(one))
    assert plain.stdout.splitlines() == [
        f"sha1://{sha1_of(b'file 2')}/three.txt",
        f"sha1://{sha1_of(b'file 0')}/one.txt",
    ]


def test_usage_errors(cli, kenv, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    for args in (
        ("store-file", "--label", "x", str(a), str(b)),
        ("link-file", "--label", "x", str(a), str(b)),
        ("store-file", "-", str(a)),
        ("load-file", "-r", f"sha1dir://{'0' * 40}.x"),  # no --dest
    ):
        result = cli(*args)
        assert result.returncode == 2, (args, result)
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert object_names(storage_of(kenv)) == []


def test_folder_without_r_is_one_line_error(cli, kenv, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "data")
    for program in ("store-file", "link-file"):
        result = cli(program, str(folder))
        assert result.returncode == 1, result
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
        assert "is a directory" in result.stderr and "-r" in result.stderr
        assert result.stdout == ""
    assert object_names(storage_of(kenv)) == []


def test_label_default_and_given(cli, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "my recording")
    expected = expected_dir_sha1(TREE)
    assert store_folder(cli, folder) == f"sha1dir://{expected}.my%20recording"
    assert store_folder(cli, folder, "--label", "v1.2.final") == f"sha1dir://{expected}.v1.2.final"
    assert store_folder(cli, Path(str(folder) + "/")) == f"sha1dir://{expected}.my%20recording"
    bad = cli("store-file", "-r", str(folder), "--label", "a/b")
    assert bad.returncode != 0 and "label" in bad.stderr, bad


def test_same_tree_same_uri_anywhere(cli, kenv, tmp_path: Path) -> None:
    first = write_tree(tmp_path / "x" / "data")
    second = write_tree(tmp_path / "y" / "data", order=list(reversed(list(TREE))))
    os.utime(second / "a.txt", (1, 1))
    uri = store_folder(cli, first)
    assert store_folder(cli, second) == uri
    other = dict(kenv, KACHERY_STORAGE_DIR=str(tmp_path / "other-storage"))
    elsewhere = cli("store-file", "-r", str(second), env=other)
    assert elsewhere.stdout.strip() == uri
    assert uri == f"sha1dir://{expected_dir_sha1(TREE)}.data"


def test_empty_folders_are_kept(cli, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "data", {"f.txt": b"f"})
    (folder / "empty" / "inner").mkdir(parents=True)
    (folder / "also-empty").mkdir()
    uri = store_folder(cli, folder)
    assert uri == (
        f"sha1dir://{expected_dir_sha1({'f.txt': b'f'}, ['empty/inner', 'also-empty'])}.data"
    )
    names = [e["name"] for e in json.loads(cli("ls", "-r", "--json", uri).stdout)]
    assert names == ["also-empty/", "empty/", "empty/inner/", "f.txt"]
    dest = tmp_path / "out"
    assert cli("load-file", "-r", uri, "--dest", str(dest)).returncode == 0
    assert (dest / "empty" / "inner").is_dir() and (dest / "also-empty").is_dir()
    empty = store_folder(cli, tmp_path / "data" / "also-empty")
    assert empty == f"sha1dir://{expected_dir_sha1({})}.also-empty"
    assert cli("ls", empty).stdout == ""


def test_symlink_to_a_file_is_stored_as_its_content(cli, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"target content")
    folder = write_tree(tmp_path / "data", {"f.txt": b"f"})
    (folder / "link.txt").symlink_to(outside)
    uri = store_folder(cli, folder)
    assert uri == (
        f"sha1dir://{expected_dir_sha1({'f.txt': b'f', 'link.txt': b'target content'})}.data"
    )
    dest = tmp_path / "out"
    assert cli("load-file", "-r", uri, "--dest", str(dest)).returncode == 0
    assert not (dest / "link.txt").is_symlink()
    assert (dest / "link.txt").read_bytes() == b"target content"


def _problem_tree(root: Path, kind: str) -> str:
    """A good tree with one entry that cannot be stored; the name shown for it."""
    write_tree(root)
    if kind == "broken link":
        (root / "sub" / "dangling").symlink_to(root / "nowhere")
        return "dangling"
    if kind == "FIFO":
        os.mkfifo(root / "pipe")
        return "pipe"
    (root / "dirlink").symlink_to(root / "sub")
    return "dirlink"


KINDS = ["broken link", "FIFO", "symbolic link to a directory"]


@pytest.mark.parametrize("program", ["store-file", "link-file"])
def test_unstorable_entries_fail_before_anything_is_stored(
    cli, kenv, tmp_path: Path, program: str
) -> None:
    for i, kind in enumerate(KINDS):
        root = tmp_path / f"tree{i}"
        name = _problem_tree(root, kind)
        result = cli(program, "-r", str(root))
        assert result.returncode == 1, result
        lines = result.stderr.splitlines()
        assert len(lines) == 2, result
        assert lines[0].startswith("Cannot store: ") and name in lines[0]
        assert kind.split()[0] in lines[0].lower() or kind in lines[0], lines[0]
        assert lines[1].startswith("Error: ")
        assert result.stdout == ""
        assert object_names(storage_of(kenv)) == []  # the scan failed before any object
    every = tmp_path / "all"
    for kind in KINDS:
        _problem_tree(every, kind)
    result = cli(program, "-r", str(every))
    assert result.returncode == 1
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == [
        "Cannot store",
        "Cannot store",
        "Cannot store",
        "Error",
    ]
    assert "3 entries" in result.stderr
    assert object_names(storage_of(kenv)) == []


def test_every_folder_is_checked_before_anything_is_stored(cli, kenv, tmp_path: Path) -> None:
    """A file and a good folder before a bad folder on one command line: nothing stored."""
    good = write_tree(tmp_path / "good")
    bad = tmp_path / "bad"
    name = _problem_tree(bad, "broken link")
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"stored only if every folder can be\n")
    result = cli("store-file", "-r", str(plain), str(good), str(bad))
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr.startswith("Cannot store: ") and name in result.stderr.splitlines()[0]
    assert object_names(storage_of(kenv)) == []


def test_skip_errors_leaves_them_out(cli, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for kind in KINDS:
        _problem_tree(root, kind)
    result = cli("store-file", "-r", "--skip-errors", str(root))
    assert result.returncode == 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith("Skipped: ") for line in lines)
    assert result.stdout.strip() == f"sha1dir://{expected_dir_sha1(TREE)}.data"


def test_link_file_r_links_and_goes_stale(cli, kenv, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "data")
    result = cli("link-file", "-r", str(folder))
    assert result.returncode == 0, result
    uri = result.stdout.strip()
    assert uri == f"sha1dir://{expected_dir_sha1(TREE)}.data"
    objects = object_names(storage_of(kenv))
    assert sum(name.endswith(".link") for name in objects) == len(set(TREE.values()))
    assert len(objects) == len(set(TREE.values())) + 1  # the links, and the directory object
    loaded = cli("load-file", f"{uri}/sub/b.bin")
    assert Path(loaded.stdout.strip()) == (folder / "sub" / "b.bin").resolve()
    dest = tmp_path / "out"
    assert cli("load-file", "-r", uri, "--dest", str(dest)).returncode == 0
    assert files_below(dest) == TREE
    assert os.stat(dest / "a.txt").st_ino != os.stat(folder / "a.txt").st_ino  # a copy
    (folder / "a.txt").write_bytes(b"edited\n")
    stale = cli("load-file", f"{uri}/a.txt")
    assert stale.returncode == 1, stale
    assert stale.stderr.count("\n") == 1 and str(folder / "a.txt") in stale.stderr
    assert "changed" in stale.stderr
    assert cli("cat-file", f"{uri}/sub/deeper/c.json").stdout_bytes == TREE["sub/deeper/c.json"]
    again = cli("load-file", "-r", uri, "--dest", str(tmp_path / "again"))
    assert again.returncode == 1 and "changed" in again.stderr
    assert not (tmp_path / "again").exists()
