"""kachery_core.atomic_file: the one way small files are replaced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kachery_core.atomic_file import write_atomically


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_with_the_exact_mode_and_leaves_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    write_atomically(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret" and _mode(target) == 0o600
    write_atomically(target, b"public", mode=0o644)  # replaces, mode exactly as asked
    assert target.read_bytes() == b"public" and _mode(target) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]


def test_mode_none_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomically(tmp_path / "config.toml", b"x = 1\n", mode=None)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "config.toml") == 0o640


def test_a_failed_check_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_bytes(b"good = 1\n")

    def refuse(staged: Path) -> None:
        assert staged.parent == tmp_path and staged.read_bytes() == b"broken"
        raise ValueError("not valid")

    with pytest.raises(ValueError):
        write_atomically(target, b"broken", check=refuse)
    assert target.read_bytes() == b"good = 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_a_failed_write_removes_the_staging_file(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "f"
    with pytest.raises(FileNotFoundError):
        write_atomically(target, b"x")
    bad_group = tmp_path / "f"
    if os.geteuid() != 0:  # only root may give a file a group it is not in
        with pytest.raises(PermissionError):
            write_atomically(bad_group, b"x", group=_a_foreign_group())
        assert list(tmp_path.iterdir()) == []


def _a_foreign_group() -> int:
    mine = set(os.getgroups()) | {os.getegid()}
    return next(g for g in range(1, 65536) if g not in mine)
