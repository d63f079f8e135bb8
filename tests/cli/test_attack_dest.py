"""`load-file -r` and `load-file --dest` under attack, as real CLI processes.

A folder of the destination (or of the staging folder) swapped for a symlink to a folder
outside it while the files download: nothing is written outside, and the load fails with
one line. The load is held at a known moment by an honest proxy between the client
(`remote` backend) and a real node (tests/pause_proxy.py). Also: names as long as the
filesystem allows round-trip, and every conflict is found before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from conftest import command
from proxies import proxy_launcher

PROXY = str(Path(__file__).parent.parent / "pause_proxy.py")

TREE = {
    "a.txt": b"alpha\n",
    "sub/b.txt": b"bravo\n",
    "sub/deeper/c.txt": b"charlie\n",
}


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _write_tree(root: Path, files: Dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _files_below(root: Path) -> Dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def _everything_below(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result
    assert lines[0].startswith("Error: "), result
    return lines[0]


@pytest.fixture
def start_proxy() -> Iterator:
    """tests/pause_proxy.py: start(upstream_port, sha1, paused, go) -> the proxy's port."""
    with proxy_launcher(PROXY) as start:
        yield start


def _remote_env(cli, kenv: Dict[str, str], node, port: int, cache: Path) -> Dict[str, str]:
    made = cli(
        "token", "create", "--label", "dest", "--scope", "read",
        "--storage-dir", str(node.storage_dir), program="kachery-daemon",
    )  # fmt: skip
    assert made.returncode == 0, made
    return dict(
        kenv,
        KACHERY_TRANSPORT="remote",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_DAEMON_PORT=str(port),
        KACHERY_STORAGE_DIR=str(cache),
        KACHERY_AUTH_TOKEN=made.stdout.strip(),
    )


def _held_load(
    cli, kenv, node, start_proxy, tmp_path: Path, args: List[str], swap
) -> subprocess.CompletedProcess:
    """Run `kachery-client load-file ARGS` through the pausing proxy; call `swap()` while
    the download of sub/b.txt is held, then let it go on. The process's result."""
    paused, go = tmp_path / "paused", tmp_path / "go"
    port = start_proxy(node.port, _sha1(TREE["sub/b.txt"]), paused, go)
    env = _remote_env(cli, kenv, node, port, tmp_path / "laptop-cache")
    proc = subprocess.Popen(
        [command("kachery-client"), "load-file", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not paused.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the load never reached the download"
            time.sleep(0.02)
        swap()
        go.write_text("go")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class _Result:
    def __init__(self, done: subprocess.CompletedProcess) -> None:
        self.returncode = done.returncode
        self.stdout = done.stdout.decode("utf-8", "replace")
        self.stderr = done.stderr.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<rc={self.returncode} out={self.stdout[:200]!r} err={self.stderr[:400]!r}>"


def _stored_tree(cli, tmp_path: Path) -> str:
    stored = cli("store-file", "-r", str(_write_tree(tmp_path / "data", TREE)))
    assert stored.returncode == 0, stored
    return stored.stdout.strip()


@pytest.mark.parametrize("copy", [False, True], ids=["links", "copies"])
def test_folder_swapped_for_a_symlink_during_a_forced_load_is_not_written_through(
    cli, kenv, node, start_proxy, tmp_path: Path, copy: bool
) -> None:
    uri = _stored_tree(cli, tmp_path)
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    (dest / "sub").mkdir(parents=True)
    (dest / "mine.txt").write_text("mine")
    outside.mkdir()

    def swap() -> None:
        os.rmdir(dest / "sub")
        (dest / "sub").symlink_to(outside, target_is_directory=True)

    extra = ["--copy"] if copy else []
    args = ["-r", uri, "--dest", str(dest), "--force", *extra]
    result = _Result(_held_load(cli, kenv, node, start_proxy, tmp_path, args, swap))
    line = _error_line(result)
    assert str(dest / "sub") in line and "changed during the load" in line, line
    assert os.listdir(outside) == []  # nothing written outside DEST, not even a staging file
    assert (dest / "sub").is_symlink()
    assert (dest / "mine.txt").read_text() == "mine"


def test_symlink_put_into_the_staging_folder_is_not_written_through(
    cli, kenv, node, start_proxy, tmp_path: Path
) -> None:
    uri = _stored_tree(cli, tmp_path)
    parent, outside = tmp_path / "out", tmp_path / "outside"
    parent.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")

    def swap() -> None:
        staging = [p for p in parent.iterdir() if p.name.endswith(".part")]
        assert len(staging) == 1 and staging[0].is_dir(), staging
        (staging[0] / "sub").symlink_to(outside, target_is_directory=True)

    args = ["-r", uri, "--dest", str(parent / "tree"), "--copy"]
    result = _Result(_held_load(cli, kenv, node, start_proxy, tmp_path, args, swap))
    line = _error_line(result)
    assert "changed during the load" in line, line
    assert _everything_below(outside) == ["keep.txt"]  # not written, not removed
    assert (outside / "keep.txt").read_text() == "keep"
    assert os.listdir(parent) == []  # no tree, and the staging folder is cleaned up


# -- names as long as the filesystem allows ---------------------------------------------


def _longest_names(tmp_path: Path) -> Dict[str, str]:
    """Names of exactly the filesystem's limit in bytes: ASCII, and two-byte characters."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    wide = "é" * ((limit - 1) // 2) + "x" * (1 + (limit - 1) % 2)
    names = {"ascii": "n" * limit, "wide": wide}
    assert all(len(name.encode()) == limit for name in names.values())
    return names


def test_longest_names_round_trip(cli, tmp_path: Path) -> None:
    n = _longest_names(tmp_path)
    files = {
        f"{n['ascii']}/{n['wide']}": b"nested\n",
        f"{n['wide']}/{n['ascii']}/{n['ascii']}": b"deeper\n",
        "short.txt": b"short\n",
    }
    stored = cli("store-file", "-r", str(_write_tree(tmp_path / "data", files)))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "other").write_text("other")
    for dest, extra in (
        (tmp_path / "new", []),
        (tmp_path / n["wide"], []),  # the destination's own name at the limit
        (tmp_path / "new", ["--force", "--copy"]),  # over the first load, file by file
        (busy, ["--force"]),
    ):
        result = cli("load-file", "-r", uri, "--dest", str(dest), *extra)
        assert result.returncode == 0, result
        assert _files_below(dest) == (files if dest != busy else {**files, "other": b"other"})
    out = tmp_path / "single"
    out.mkdir()
    for rel, data in files.items():  # load-file --dest: into a folder, and onto a file
        for _ in range(2):
            one = cli("load-file", f"{uri}/{rel}", "--dest", str(out))
            assert one.returncode == 0, one
            assert (out / rel.split("/")[-1]).read_bytes() == data
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".part")]
    assert leftovers == []


# -- every conflict found first ------------------------------------------------------------


@pytest.mark.parametrize("copy", [False, True], ids=["links", "copies"])
@pytest.mark.parametrize("kind", ["link to a folder", "link to a FIFO", "dangling link"])
def test_every_conflict_is_found_before_anything_is_written(
    cli, tmp_path: Path, copy: bool, kind: str
) -> None:
    files = {"a.txt": b"new a\n", "sub/b.txt": b"new b\n", "z.txt": b"new z\n"}
    stored = cli("store-file", "-r", str(_write_tree(tmp_path / "data", files)))
    assert stored.returncode == 0, stored
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.txt").write_text("old a")
    elsewhere = tmp_path / "elsewhere"
    if kind == "link to a folder":
        elsewhere.mkdir()
    elif kind == "link to a FIFO":
        os.mkfifo(elsewhere)
    (dest / "z.txt").symlink_to(elsewhere)  # sorted last: written last, checked first
    extra = ["--copy"] if copy else []
    result = cli("load-file", "-r", stored.stdout.strip(), "--dest", str(dest), "--force", *extra)
    line = _error_line(result)
    assert str(dest / "z.txt") in line, line
    assert (dest / "a.txt").read_text() == "old a"  # nothing written
    assert sorted(os.listdir(dest)) == ["a.txt", "z.txt"]
    assert (dest / "z.txt").is_symlink()
