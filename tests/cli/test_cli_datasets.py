"""Folders through the CLI (`store-file -r`, `link-file -r`, `ls`, `load-file -r`), as
real subprocesses on the embedded `local` backend and on `offline` (read-only)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import command

from kachery_core.store.layout import StorageLayout

TREE = {
    "a.txt": b"alpha\n",
    "sub/b.bin": bytes(range(256)) * 40,
    "sub/deeper/c.json": b'{"c": 3}',
    "z.dat": b"",
}


def _write_tree(root: Path, files: Dict[str, bytes] = TREE, order: List[str] = None) -> Path:
    for rel in order or list(files):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(files[rel])
    return root


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _objects(storage_dir: Path) -> List[str]:
    """Every object (and link record) in a storage directory."""
    top = storage_dir / "sha1"
    return sorted(p.name for p in top.rglob("*") if p.is_file()) if top.is_dir() else []


def _storage(kenv: dict) -> Path:
    return Path(kenv["KACHERY_STORAGE_DIR"])


def _files_below(root: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _expected_dir_sha1(files: Dict[str, bytes], empty_dirs: List[str] = ()) -> str:
    """The canonical directory object, built here independently of kachery's code."""
    doc: dict = {"dirs": {}, "files": {}}
    for rel in empty_dirs:
        node = doc
        for name in rel.split("/"):
            node = node["dirs"].setdefault(name, {"dirs": {}, "files": {}})
    for rel, data in files.items():
        *dirs, name = rel.split("/")
        node = doc
        for d in dirs:
            node = node["dirs"].setdefault(d, {"dirs": {}, "files": {}})
        node["files"][name] = {"sha1": _sha1(data), "size": len(data)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _sha1(text.encode("utf-8"))


def _store_tree(cli, root: Path, *extra: str) -> str:
    result = cli("store-file", "-r", str(root), *extra)
    assert result.returncode == 0, result
    return result.stdout.strip()


# -- storing ------------------------------------------------------------------------------


def test_several_paths_print_uris_in_order(cli, tmp_path: Path) -> None:
    one, two, three = (tmp_path / n for n in ("one.txt", "two.txt", "three.txt"))
    for i, p in enumerate((one, two, three)):
        p.write_bytes(f"file {i}".encode())
    folder = _write_tree(tmp_path / "data")
    result = cli("store-file", "-r", str(one), str(two), str(folder), str(three))
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == [
        f"sha1://{_sha1(b'file 0')}/one.txt",
        f"sha1://{_sha1(b'file 1')}/two.txt",
        f"sha1dir://{_expected_dir_sha1(TREE)}.data",
        f"sha1://{_sha1(b'file 2')}/three.txt",
    ]
    plain = cli("store-file", str(three), str(one))
    assert plain.stdout.splitlines() == [
        f"sha1://{_sha1(b'file 2')}/three.txt",
        f"sha1://{_sha1(b'file 0')}/one.txt",
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
    assert _objects(_storage(kenv)) == []


def test_folder_without_r_is_one_line_error(cli, kenv, tmp_path: Path) -> None:
    folder = _write_tree(tmp_path / "data")
    for program in ("store-file", "link-file"):
        result = cli(program, str(folder))
        assert result.returncode == 1, result
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
        assert "is a directory" in result.stderr and "-r" in result.stderr
        assert result.stdout == ""
    assert _objects(_storage(kenv)) == []


def test_label_default_and_given(cli, tmp_path: Path) -> None:
    folder = _write_tree(tmp_path / "my recording")
    expected = _expected_dir_sha1(TREE)
    assert _store_tree(cli, folder) == f"sha1dir://{expected}.my%20recording"
    assert _store_tree(cli, folder, "--label", "v1.2.final") == f"sha1dir://{expected}.v1.2.final"
    assert _store_tree(cli, Path(str(folder) + "/")) == f"sha1dir://{expected}.my%20recording"
    bad = cli("store-file", "-r", str(folder), "--label", "a/b")
    assert bad.returncode != 0 and "label" in bad.stderr, bad


def test_same_tree_same_uri_anywhere(cli, kenv, tmp_path: Path) -> None:
    first = _write_tree(tmp_path / "x" / "data")
    second = _write_tree(tmp_path / "y" / "data", order=list(reversed(list(TREE))))
    os.utime(second / "a.txt", (1, 1))
    uri = _store_tree(cli, first)
    assert _store_tree(cli, second) == uri
    other = dict(kenv, KACHERY_STORAGE_DIR=str(tmp_path / "other-storage"))
    elsewhere = cli("store-file", "-r", str(second), env=other)
    assert elsewhere.stdout.strip() == uri
    assert uri == f"sha1dir://{_expected_dir_sha1(TREE)}.data"


def test_empty_folders_are_kept(cli, tmp_path: Path) -> None:
    folder = _write_tree(tmp_path / "data", {"f.txt": b"f"})
    (folder / "empty" / "inner").mkdir(parents=True)
    (folder / "also-empty").mkdir()
    uri = _store_tree(cli, folder)
    assert uri == (
        f"sha1dir://{_expected_dir_sha1({'f.txt': b'f'}, ['empty/inner', 'also-empty'])}.data"
    )
    names = [e["name"] for e in json.loads(cli("ls", "-r", "--json", uri).stdout)]
    assert names == ["also-empty/", "empty/", "empty/inner/", "f.txt"]
    dest = tmp_path / "out"
    assert cli("load-file", "-r", uri, "--dest", str(dest)).returncode == 0
    assert (dest / "empty" / "inner").is_dir() and (dest / "also-empty").is_dir()
    empty = _store_tree(cli, tmp_path / "data" / "also-empty")
    assert empty == f"sha1dir://{_expected_dir_sha1({})}.also-empty"
    assert cli("ls", empty).stdout == ""


def test_symlink_to_a_file_is_stored_as_its_content(cli, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"target content")
    folder = _write_tree(tmp_path / "data", {"f.txt": b"f"})
    (folder / "link.txt").symlink_to(outside)
    uri = _store_tree(cli, folder)
    assert uri == (
        f"sha1dir://{_expected_dir_sha1({'f.txt': b'f', 'link.txt': b'target content'})}.data"
    )
    dest = tmp_path / "out"
    assert cli("load-file", "-r", uri, "--dest", str(dest)).returncode == 0
    assert not (dest / "link.txt").is_symlink()
    assert (dest / "link.txt").read_bytes() == b"target content"


def _problem_tree(root: Path, kind: str) -> str:
    """A good tree with one entry that cannot be stored; the name shown for it."""
    _write_tree(root)
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
        assert _objects(_storage(kenv)) == []  # the scan failed before any object
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
    assert _objects(_storage(kenv)) == []


def test_every_folder_is_checked_before_anything_is_stored(cli, kenv, tmp_path: Path) -> None:
    """A file and a good folder before a bad folder on one command line: nothing stored."""
    good = _write_tree(tmp_path / "good")
    bad = tmp_path / "bad"
    name = _problem_tree(bad, "broken link")
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"stored only if every folder can be\n")
    result = cli("store-file", "-r", str(plain), str(good), str(bad))
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr.startswith("Cannot store: ") and name in result.stderr.splitlines()[0]
    assert _objects(_storage(kenv)) == []


def test_skip_errors_leaves_them_out(cli, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for kind in KINDS:
        _problem_tree(root, kind)
    result = cli("store-file", "-r", "--skip-errors", str(root))
    assert result.returncode == 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith("Skipped: ") for line in lines)
    assert result.stdout.strip() == f"sha1dir://{_expected_dir_sha1(TREE)}.data"


def test_link_file_r_links_and_goes_stale(cli, kenv, tmp_path: Path) -> None:
    folder = _write_tree(tmp_path / "data")
    result = cli("link-file", "-r", str(folder))
    assert result.returncode == 0, result
    uri = result.stdout.strip()
    assert uri == f"sha1dir://{_expected_dir_sha1(TREE)}.data"
    objects = _objects(_storage(kenv))
    assert sum(name.endswith(".link") for name in objects) == len(set(TREE.values()))
    assert len(objects) == len(set(TREE.values())) + 1  # the links, and the directory object
    loaded = cli("load-file", f"{uri}/sub/b.bin")
    assert Path(loaded.stdout.strip()) == (folder / "sub" / "b.bin").resolve()
    dest = tmp_path / "out"
    assert cli("load-file", "-r", uri, "--dest", str(dest)).returncode == 0
    assert _files_below(dest) == TREE
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


# -- reading --------------------------------------------------------------------------


def test_ls_output_is_exact(cli, tmp_path: Path) -> None:
    uri = _store_tree(cli, _write_tree(tmp_path / "data"))
    h = {rel: _sha1(data) for rel, data in TREE.items()}
    assert cli("ls", uri).stdout == (
        f"a.txt      6  sha1://{h['a.txt']}/a.txt\n"
        f"sub/   10248  {uri}/sub\n"
        f"z.dat      0  sha1://{h['z.dat']}/z.dat\n"
    )
    assert cli("ls", "-r", uri).stdout == (
        f"a.txt                  6  sha1://{h['a.txt']}/a.txt\n"
        f"sub/               10248  {uri}/sub\n"
        f"sub/b.bin          10240  sha1://{h['sub/b.bin']}/b.bin\n"
        f"sub/deeper/            8  {uri}/sub/deeper\n"
        f"sub/deeper/c.json      8  sha1://{h['sub/deeper/c.json']}/c.json\n"
        f"z.dat                  0  sha1://{h['z.dat']}/z.dat\n"
    )
    assert json.loads(cli("ls", "--json", "-r", f"{uri}/sub").stdout) == [
        {"name": "b.bin", "type": "file", "size": 10240, "uri": f"sha1://{h['sub/b.bin']}/b.bin"},
        {"name": "deeper/", "type": "dir", "size": 8, "uri": f"{uri}/sub/deeper"},
        {
            "name": "deeper/c.json",
            "type": "file",
            "size": 8,
            "uri": f"sha1://{h['sub/deeper/c.json']}/c.json",
        },
    ]
    missing = cli("ls", f"{uri}/nope")
    assert missing.returncode == 1 and "'nope'" in missing.stderr
    not_dir = cli("ls", f"sha1://{h['a.txt']}")
    assert not_dir.returncode != 0 and not_dir.stderr.count("\n") == 1


def test_load_and_cat_a_path_inside(cli, kenv, tmp_path: Path) -> None:
    uri = _store_tree(cli, _write_tree(tmp_path / "data"))
    loaded = cli("load-file", f"{uri}/sub/b.bin")
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    assert path == StorageLayout(_storage(kenv)).object_path(_sha1(TREE["sub/b.bin"]))
    assert path.read_bytes() == TREE["sub/b.bin"]
    dest = tmp_path / "copies"
    dest.mkdir()
    copied = cli("load-file", f"{uri}/sub/b.bin", "--dest", str(dest))
    assert copied.stdout.strip() == str(dest / "b.bin")
    assert cli("cat-file", f"{uri}/sub/b.bin").stdout_bytes == TREE["sub/b.bin"]
    assert cli("cat-file", f"{uri}/a.txt", "--start", "1", "--end", "3").stdout_bytes == b"lp"
    folder = cli("load-file", f"{uri}/sub")
    assert folder.returncode == 1, folder
    assert folder.stderr.count("\n") == 1 and "is a directory, not a file" in folder.stderr
    assert "-r" in folder.stderr
    assert cli("cat-file", f"{uri}/sub").returncode == 1


def test_load_dir_destinations(cli, tmp_path: Path) -> None:
    uri = _store_tree(cli, _write_tree(tmp_path / "data"))
    absent = tmp_path / "absent"
    result = cli("load-file", "-r", uri, "--dest", str(absent))
    assert result.returncode == 0 and result.stdout.strip() == str(absent)
    assert _files_below(absent) == TREE
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("load-file", "-r", uri, "--dest", str(empty)).returncode == 0
    assert _files_below(empty) == TREE
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "a.txt").write_bytes(b"mine")
    (busy / "other").write_bytes(b"other")
    refused = cli("load-file", "-r", uri, "--dest", str(busy))
    assert refused.returncode == 1 and "not empty" in refused.stderr and "--force" in refused.stderr
    assert _files_below(busy) == {"a.txt": b"mine", "other": b"other"}
    forced = cli("load-file", "-r", uri, "--dest", str(busy), "--force")
    assert forced.returncode == 0, forced
    assert _files_below(busy) == {**TREE, "other": b"other"}
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for dest, words in (
        (a_file, "is not a directory"),
        (tmp_path / "no" / "such" / "dest", "does not exist"),
    ):
        bad = cli("load-file", "-r", uri, "--dest", str(dest))
        assert bad.returncode == 1 and words in bad.stderr, bad
        assert bad.stderr.count("\n") == 1
    assert a_file.read_text() == "x" and not (tmp_path / "no").exists()
    sub = cli("load-file", "-r", f"{uri}/sub", "--dest", str(tmp_path / "sub"))
    assert sub.returncode == 0
    assert _files_below(tmp_path / "sub") == {
        "b.bin": TREE["sub/b.bin"],
        "deeper/c.json": b'{"c": 3}',
    }
    file_r = cli("load-file", "-r", f"{uri}/a.txt", "--dest", str(tmp_path / "f"))
    assert file_r.returncode == 1 and "load it without -r" in file_r.stderr
    assert not (tmp_path / "f").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_hard_links_and_copies(cli, kenv, tmp_path: Path) -> None:
    uri = _store_tree(cli, _write_tree(tmp_path / "data"))
    layout = StorageLayout(_storage(kenv))
    linked = tmp_path / "linked"
    assert cli("load-file", "-r", uri, "--dest", str(linked)).returncode == 0
    copied = tmp_path / "copied"
    assert cli("load-file", "-r", uri, "--dest", str(copied), "--copy").returncode == 0
    for rel, data in TREE.items():
        obj = layout.object_path(_sha1(data))
        assert os.stat(linked / rel).st_ino == os.stat(obj).st_ino
        assert not stat.S_IMODE(os.stat(linked / rel).st_mode) & 0o222
        assert os.stat(copied / rel).st_ino != os.stat(obj).st_ino
        assert os.stat(copied / rel).st_mode & 0o200
    (copied / "a.txt").write_bytes(b"changed")
    assert layout.object_path(_sha1(TREE["a.txt"])).read_bytes() == TREE["a.txt"]
    assert (linked / "a.txt").read_bytes() == TREE["a.txt"]
    # --copy over an earlier load's hard links: they become copies, the store is untouched
    again = cli("load-file", "-r", uri, "--dest", str(linked), "--force", "--copy")
    assert again.returncode == 0, again
    for rel, data in TREE.items():
        obj = layout.object_path(_sha1(data))
        assert os.stat(linked / rel).st_ino != os.stat(obj).st_ino
        assert os.stat(linked / rel).st_mode & 0o200
        assert (linked / rel).read_bytes() == data
    assert _files_below(linked) == TREE


def test_damaged_object_leaves_nothing(cli, kenv, tmp_path: Path) -> None:
    uri = _store_tree(cli, _write_tree(tmp_path / "data"))
    damaged = StorageLayout(_storage(kenv)).object_path(_sha1(TREE["sub/b.bin"]))
    os.chmod(damaged, 0o644)
    with open(damaged, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x00")
    out = tmp_path / "out"
    out.mkdir()
    for extra in ((), ("--copy",)):
        result = cli("load-file", "-r", uri, "--dest", str(out / "tree"), *extra)
        assert result.returncode == 1, result
        assert result.stderr.count("\n") == 1
        assert _sha1(TREE["sub/b.bin"]) in result.stderr and "hash" in result.stderr
        assert os.listdir(out) == []  # no dest folder, no staging folder


def test_killed_load_leaves_only_a_staging_folder(cli, kenv, tmp_path: Path) -> None:
    files = {f"d{i // 100}/f{i:04}.bin": os.urandom(16_384) + bytes([i % 256]) for i in range(800)}
    uri = _store_tree(cli, _write_tree(tmp_path / "big", files))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [command("kachery-client"), "load-file", "-r", uri, "--dest", str(out / "tree"), "--copy"],
        env=kenv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        staged = False
        while time.monotonic() < deadline and proc.poll() is None:
            parts = [p for p in out.iterdir() if p.name.endswith(".part")]
            if parts and any(p.is_file() for p in parts[0].rglob("*")):
                proc.send_signal(signal.SIGKILL)
                staged = True
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    if not staged:
        pytest.skip("the load ended before it could be interrupted")
    names = os.listdir(out)
    assert len(names) == 1, names
    assert names[0].startswith(".tree.kachery-") and names[0].endswith(".part")
    assert not (out / "tree").exists()
    # the next load is not disturbed by the leftover
    result = cli("load-file", "-r", uri, "--dest", str(out / "tree"))
    assert result.returncode == 0, result
    assert len(_files_below(out / "tree")) == len(files)


def test_stdin_alone(cli) -> None:
    result = cli("store-file", "-", input=b"from stdin")
    assert result.returncode == 0 and result.stdout == f"sha1://{_sha1(b'from stdin')}\n"
    labelled = cli("store-file", "-", "--label", "in.txt", input=b"from stdin")
    assert labelled.stdout == f"sha1://{_sha1(b'from stdin')}/in.txt\n"
    assert cli("store-file", "-", "-", input=b"x").returncode == 2


# -- offline: read-only ---------------------------------------------------------------


def test_offline_reads_a_tree_and_refuses_to_store(cli, kenv, tmp_path: Path) -> None:
    folder = _write_tree(tmp_path / "data")
    uri = _store_tree(cli, folder)
    published = _storage(kenv)
    before = _objects(published)
    offline = dict(kenv, KACHERY_OFFLINE_STORAGE_DIR=str(published))
    offline.pop("KACHERY_STORAGE_DIR")
    assert "offline" in cli("info", env=offline).stdout
    assert cli("ls", "-r", uri, env=offline).stdout == cli("ls", "-r", uri).stdout
    assert cli("cat-file", f"{uri}/sub/b.bin", env=offline).stdout_bytes == TREE["sub/b.bin"]
    loaded = cli("load-file", f"{uri}/a.txt", env=offline)
    assert Path(loaded.stdout.strip()).read_bytes() == TREE["a.txt"]
    dest = tmp_path / "out"
    result = cli("load-file", "-r", uri, "--dest", str(dest), env=offline)
    assert result.returncode == 0, result
    assert _files_below(dest) == TREE
    new = _write_tree(tmp_path / "new", {"n.txt": b"new", "m/n.txt": b"newer"})
    for args in (
        ("store-file", "-r", str(new)),
        ("link-file", "-r", str(new)),
        ("store-file", "-r", str(new / "m")),
        ("store-file", str(new / "n.txt"), str(new / "m" / "n.txt")),
    ):
        refused = cli(*args, env=offline)
        assert refused.returncode == 1, (args, refused)
        assert refused.stderr.count("\n") == 1 and "offline" in refused.stderr
        assert refused.stdout == ""
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert cli("store-file", "-r", str(empty), env=offline).returncode == 1
    assert _objects(published) == before
