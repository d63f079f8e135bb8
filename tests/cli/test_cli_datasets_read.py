"""Reading folders through the CLI (`ls`, `load-file -r`, `cat-file` of a path inside):
exact output, destinations, links and copies, damage and kills leaving nothing behind;
real subprocesses on the embedded `local` backend and on `offline` (read-only)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from cli_trees import (
    TREE,
    files_below,
    object_names,
    sha1_of,
    storage_of,
    store_folder,
    write_tree,
)
from conftest import command

from kachery_core.store.layout import StorageLayout

# -- reading --------------------------------------------------------------------------


def test_ls_output_is_exact(cli, tmp_path: Path) -> None:
    uri = store_folder(cli, write_tree(tmp_path / "data"))
    h = {rel: sha1_of(data) for rel, data in TREE.items()}
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
    uri = store_folder(cli, write_tree(tmp_path / "data"))
    loaded = cli("load-file", f"{uri}/sub/b.bin")
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    assert path == StorageLayout(storage_of(kenv)).object_path(sha1_of(TREE["sub/b.bin"]))
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
    uri = store_folder(cli, write_tree(tmp_path / "data"))
    absent = tmp_path / "absent"
    result = cli("load-file", "-r", uri, "--dest", str(absent))
    assert result.returncode == 0 and result.stdout.strip() == str(absent)
    assert files_below(absent) == TREE
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("load-file", "-r", uri, "--dest", str(empty)).returncode == 0
    assert files_below(empty) == TREE
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "a.txt").write_bytes(b"mine")
    (busy / "other").write_bytes(b"other")
    refused = cli("load-file", "-r", uri, "--dest", str(busy))
    assert refused.returncode == 1 and "not empty" in refused.stderr and "--force" in refused.stderr
    assert files_below(busy) == {"a.txt": b"mine", "other": b"other"}
    forced = cli("load-file", "-r", uri, "--dest", str(busy), "--force")
    assert forced.returncode == 0, forced
    assert files_below(busy) == {**TREE, "other": b"other"}
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
    assert files_below(tmp_path / "sub") == {
        "b.bin": TREE["sub/b.bin"],
        "deeper/c.json": b'{"c": 3}',
    }
    file_r = cli("load-file", "-r", f"{uri}/a.txt", "--dest", str(tmp_path / "f"))
    assert file_r.returncode == 1 and "load it without -r" in file_r.stderr
    assert not (tmp_path / "f").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_hard_links_and_copies(cli, kenv, tmp_path: Path) -> None:
    uri = store_folder(cli, write_tree(tmp_path / "data"))
    layout = StorageLayout(storage_of(kenv))
    linked = tmp_path / "linked"
    assert cli("load-file", "-r", uri, "--dest", str(linked)).returncode == 0
    copied = tmp_path / "copied"
    assert cli("load-file", "-r", uri, "--dest", str(copied), "--copy").returncode == 0
    for rel, data in TREE.items():
        obj = layout.object_path(sha1_of(data))
        assert os.stat(linked / rel).st_ino == os.stat(obj).st_ino
        assert not stat.S_IMODE(os.stat(linked / rel).st_mode) & 0o222
        assert os.stat(copied / rel).st_ino != os.stat(obj).st_ino
        assert os.stat(copied / rel).st_mode & 0o200
    (copied / "a.txt").write_bytes(b"changed")
    assert layout.object_path(sha1_of(TREE["a.txt"])).read_bytes() == TREE["a.txt"]
    assert (linked / "a.txt").read_bytes() == TREE["a.txt"]
    # --copy over an earlier load's hard links: they become copies, the store is untouched
    again = cli("load-file", "-r", uri, "--dest", str(linked), "--force", "--copy")
    assert again.returncode == 0, again
    for rel, data in TREE.items():
        obj = layout.object_path(sha1_of(data))
        assert os.stat(linked / rel).st_ino != os.stat(obj).st_ino
        assert os.stat(linked / rel).st_mode & 0o200
        assert (linked / rel).read_bytes() == data
    assert files_below(linked) == TREE


def test_damaged_object_leaves_nothing(cli, kenv, tmp_path: Path) -> None:
    uri = store_folder(cli, write_tree(tmp_path / "data"))
    damaged = StorageLayout(storage_of(kenv)).object_path(sha1_of(TREE["sub/b.bin"]))
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
        assert sha1_of(TREE["sub/b.bin"]) in result.stderr and "hash" in result.stderr
        assert os.listdir(out) == []  # no dest folder, no staging folder


def test_killed_load_leaves_only_a_staging_folder(cli, kenv, tmp_path: Path) -> None:
    files = {f"d{i // 100}/f{i:04}.bin": os.urandom(16_384) + bytes([i % 256]) for i in range(800)}
    uri = store_folder(cli, write_tree(tmp_path / "big", files))
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
    assert len(files_below(out / "tree")) == len(files)


def test_stdin_alone(cli) -> None:
    result = cli("store-file", "-", input=b"from stdin")
    assert result.returncode == 0 and result.stdout == f"sha1://{sha1_of(b'from stdin')}\n"
    labelled = cli("store-file", "-", "--label", "in.txt", input=b"from stdin")
    assert labelled.stdout == f"sha1://{sha1_of(b'from stdin')}/in.txt\n"
    assert cli("store-file", "-", "-", input=b"x").returncode == 2


# -- offline: read-only ---------------------------------------------------------------


def test_offline_reads_a_tree_and_refuses_to_store(cli, kenv, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "data")
    uri = store_folder(cli, folder)
    published = storage_of(kenv)
    before = object_names(published)
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
    assert files_below(dest) == TREE
    new = write_tree(tmp_path / "new", {"n.txt": b"new", "m/n.txt": b"newer"})
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
    assert object_names(published) == before
