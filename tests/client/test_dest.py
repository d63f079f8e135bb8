"""`load-file --dest`: only a missing path, a regular file or a symlink to one is replaced;
devices, FIFOs, directories and dangling symlinks are refused. Real CLI processes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


@pytest.fixture
def stored(cli, tmp_path: Path) -> str:
    src = tmp_path / "payload.txt"
    src.write_text("payload")
    result = cli("store-file", str(src))
    assert result.returncode == 0, result
    return result.stdout.strip()


def _refused(result, *words: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result
    for word in words:
        assert word in lines[0], result


def _no_staging_left(directory: Path) -> None:
    assert not [p for p in directory.iterdir() if p.name.endswith(".part")]


def test_dev_null_is_refused_and_untouched(cli, stored: str) -> None:
    before = os.lstat("/dev/null")
    assert stat.S_ISCHR(before.st_mode)
    _refused(cli("load-file", stored, "--dest", "/dev/null"), "/dev/null", "character device")
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino
    assert not [n for n in os.listdir("/dev") if n.startswith(".null.")]


def test_fifo_is_refused(cli, stored: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _refused(cli("load-file", stored, "--dest", str(fifo), timeout=30), "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    _no_staging_left(tmp_path)


def test_directory_at_final_path_is_refused(cli, stored: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "payload.txt").mkdir(parents=True)
    _refused(cli("load-file", stored, "--dest", str(out)), "directory", "payload.txt")
    assert (out / "payload.txt").is_dir()
    _no_staging_left(out)


def test_directory_means_inside_it(cli, stored: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for dest in (str(out), str(out) + "/"):
        result = cli("load-file", stored, "--dest", dest)
        assert result.returncode == 0, result
        assert Path(result.stdout.strip()) == out / "payload.txt"
        assert (out / "payload.txt").read_text() == "payload"


def test_trailing_slash_needs_an_existing_directory(cli, stored: str, tmp_path: Path) -> None:
    missing = tmp_path / "nodir"
    _refused(cli("load-file", stored, "--dest", str(missing) + "/"), "not a directory")
    assert not missing.exists()
    afile = tmp_path / "afile"
    afile.write_text("keep")
    _refused(cli("load-file", stored, "--dest", str(afile) + "/"), "not a directory")
    assert afile.read_text() == "keep"


def test_missing_parent_is_refused(cli, stored: str, tmp_path: Path) -> None:
    _refused(cli("load-file", stored, "--dest", str(tmp_path / "a" / "b.txt")), "does not exist")


def test_regular_file_is_replaced_atomically(cli, stored: str, tmp_path: Path) -> None:
    dest = tmp_path / "existing.txt"
    dest.write_text("old contents, longer than the new ones")
    other = tmp_path / "hardlink.txt"
    os.link(dest, other)  # replaced by rename, so another name for the old file keeps it
    result = cli("load-file", stored, "--dest", str(dest))
    assert result.returncode == 0, result
    assert dest.read_text() == "payload"
    assert other.read_text() == "old contents, longer than the new ones"
    _no_staging_left(tmp_path)


def test_symlink_to_file_is_replaced_not_followed(cli, stored: str, tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("target stays")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    result = cli("load-file", stored, "--dest", str(link))
    assert result.returncode == 0, result
    assert not link.is_symlink() and link.read_text() == "payload"
    assert target.read_text() == "target stays"


def test_symlinks_to_other_things_are_refused(cli, stored: str, tmp_path: Path) -> None:
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nothing")
    _refused(cli("load-file", stored, "--dest", str(dangling)), "symbolic link to nothing")
    assert dangling.is_symlink() and not (tmp_path / "nothing").exists()

    to_null = tmp_path / "to-null"
    to_null.symlink_to("/dev/null")
    _refused(cli("load-file", stored, "--dest", str(to_null)), "character device")
    assert to_null.is_symlink() and stat.S_ISCHR(os.lstat("/dev/null").st_mode)

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir()
    (out / "payload.txt").symlink_to(fifo)  # the final path inside a --dest directory
    _refused(cli("load-file", stored, "--dest", str(out), timeout=30), "FIFO")
    assert (out / "payload.txt").is_symlink()


def test_python_api_refuses_too(kenv, stored: str, tmp_path: Path) -> None:
    import kachery_client as kc
    from kachery_core.errors import InvalidInputError

    fifo = tmp_path / "api-pipe"
    os.mkfifo(fifo)
    with kc.Client() as client, pytest.raises(InvalidInputError, match="FIFO"):
        client.load_file(stored, dest=fifo)


def test_character_device_is_refused(cli, stored: str, tmp_path: Path) -> None:
    """A device node of our own (a twin of /dev/null), where the system lets us make one."""
    device = tmp_path / "null-twin"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    _refused(cli("load-file", stored, "--dest", str(device)), "character device")
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    _no_staging_left(tmp_path)
