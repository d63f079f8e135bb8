"""Bad input through the real CLI: one `Error:` line naming the value, the right exit code,
empty stdout, and nothing half-written in the storage directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple

import pytest

H = "943a702d06f34599aee1f8da8ef9f7296031d699"


class Case(NamedTuple):
    name: str
    args: Callable[[Path], List[str]]
    code: int
    must_mention: Callable[[Path], str]
    env: Dict[str, str] = {}


def _fifo(tmp: Path) -> str:
    path = tmp / "a-fifo"
    if not path.exists():
        os.mkfifo(path)
    return str(path)


def _file(tmp: Path, name: str = "ok.txt") -> str:
    path = tmp / name
    path.write_text("content")
    return str(path)


CASES = [
    Case("wrong scheme", lambda t: ["load-file", "http://x/y"], 1, lambda t: "'http://x/y'"),
    Case("short hash", lambda t: ["load-file", "sha1://abc"], 1, lambda t: "'sha1://abc'"),
    Case("non-hex hash", lambda t: ["cat-file", "sha1://" + "z" * 40], 1, lambda t: "z" * 40),
    Case(
        "dotdot label",
        lambda t: ["load-file", f"sha1://{H}/../etc/passwd"],
        1,
        lambda t: "../etc/passwd",
    ),
    Case(
        "absolute label",
        lambda t: ["load-file", f"sha1://{H}//etc/passwd"],
        1,
        lambda t: "//etc/passwd",
    ),
    Case(
        "dotdot as hash", lambda t: ["load-file", "sha1://../../x"], 1, lambda t: "sha1://../../x"
    ),
    Case("plain path as URI", lambda t: ["load-file", "/etc/passwd"], 1, lambda t: "/etc/passwd"),
    Case("missing object", lambda t: ["load-file", f"sha1://{'0' * 40}"], 1, lambda t: "0" * 40),
    Case("missing file", lambda t: ["store-file", str(t / "nope.bin")], 1, lambda t: "nope.bin"),
    Case(
        "missing file (link)", lambda t: ["link-file", str(t / "nope.bin")], 1, lambda t: "nope.bin"
    ),
    Case("directory as file", lambda t: ["store-file", str(t)], 1, lambda t: "is a directory"),
    Case("fifo as file", lambda t: ["store-file", _fifo(t)], 1, lambda t: "not a regular file"),
    Case("path under a file", lambda t: ["store-file", _file(t) + "/x"], 1, lambda t: "ok.txt/x"),
    Case(
        "port abc",
        lambda t: ["info"],
        1,
        lambda t: "'abc' for KACHERY_DAEMON_PORT",
        {"KACHERY_DAEMON_PORT": "abc"},
    ),
    Case(
        "port 70000", lambda t: ["info"], 1, lambda t: "'70000'", {"KACHERY_DAEMON_PORT": "70000"}
    ),
    Case(
        "bad bool",
        lambda t: ["store-file", _file(t)],
        1,
        lambda t: "'maybe' for KACHERY_KEEP_TEMP_FILES",
        {"KACHERY_KEEP_TEMP_FILES": "maybe"},
    ),
    Case("unknown backend", lambda t: ["--transport", "nosuch", "info"], 1, lambda t: "'nosuch'"),
    Case(
        "unknown backend env",
        lambda t: ["info"],
        1,
        lambda t: "'nosuch2'",
        {"KACHERY_TRANSPORT": "nosuch2"},
    ),
    Case(
        "bad backend name",
        lambda t: ["info"],
        1,
        lambda t: "'no such'",
        {"KACHERY_TRANSPORT": "no such"},
    ),
    Case(
        "unknown backend flag", lambda t: ["--backend", "nosuch3", "info"], 1, lambda t: "'nosuch3'"
    ),
    Case(
        "unknown backend, new variable",
        lambda t: ["info"],
        1,
        lambda t: "'nosuch4'",
        {"KACHERY_BACKEND": "nosuch4", "KACHERY_TRANSPORT": "local"},
    ),
    Case(
        "bad backend name, new variable",
        lambda t: ["info"],
        1,
        lambda t: "'no such' for KACHERY_BACKEND",
        {"KACHERY_BACKEND": "no such"},
    ),
    Case("unknown command", lambda t: ["frobnicate"], 2, lambda t: "frobnicate"),
    Case("missing argument", lambda t: ["store-file"], 2, lambda t: "PATH"),
    Case(
        "end before start",
        lambda t: ["cat-file", f"sha1://{H}", "--start", "5", "--end", "2"],
        2,
        lambda t: "--end",
    ),
    Case(
        "negative start", lambda t: ["cat-file", f"sha1://{H}", "--start", "-1"], 2, lambda t: "-1"
    ),
    Case(
        "dest dir missing",
        lambda t: ["load-file", f"sha1://{H}", "--dest", str(t / "no" / "x")],
        1,
        lambda t: str(t / "no"),
    ),
]


@pytest.fixture
def stored_hello(cli, tmp_path: Path) -> str:
    src = tmp_path / "hello.txt"
    src.write_bytes(b"Hello, world!")
    return cli("store-file", str(src)).stdout.strip()


def _storage_snapshot(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, cli, kenv, tmp_path: Path, stored_hello: str) -> None:
    root = Path(kenv["KACHERY_STORAGE_DIR"])
    before = _storage_snapshot(root)
    env = dict(kenv, **case.env)
    work = tmp_path / "work"
    work.mkdir()
    result = cli(*case.args(work), env=env)
    assert result.returncode == case.code, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert case.must_mention(work) in lines[0]
    assert "Traceback" not in result.stderr
    assert _storage_snapshot(root) == before  # nothing half-written


def test_range_past_the_end(cli, stored_hello: str) -> None:
    result = cli("cat-file", stored_hello, "--start", "3", "--end", "99")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "3-99" in result.stderr and "13 bytes" in result.stderr


def test_invalid_config_file(cli, kenv) -> None:
    config = Path(kenv["KACHERY_CONFIG"])
    config.parent.mkdir(parents=True)
    config.write_text("storage_dir = [unclosed\n")
    result = cli("info")
    assert result.returncode == 1
    assert str(config) in result.stderr and "not valid TOML" in result.stderr
    config.write_text('storge_dir = "/tmp/x"\n')
    result = cli("info")
    assert result.returncode == 1
    assert "'storge_dir'" in result.stderr and str(config) in result.stderr
    config.write_text("daemon_port = 0\n")
    result = cli("info")
    assert result.returncode == 1 and "daemon_port in " + str(config) in result.stderr
    config.write_text('backend = "local"\ntransport = "offline"\n')
    result = cli("info")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "both 'backend' and 'transport'" in result.stderr and str(config) in result.stderr


def test_unreadable_file_for_non_root(cli, tmp_path: Path) -> None:
    path = tmp_path / "secret.bin"
    path.write_bytes(b"x")
    path.chmod(0)
    try:
        result = cli("store-file", str(path))
        if os.geteuid() == 0:
            # root reads anything: the store must then simply succeed.
            assert result.returncode == 0, result
        else:
            assert result.returncode == 1
            assert "permission denied" in result.stderr and "secret.bin" in result.stderr
    finally:
        path.chmod(0o600)
