"""Shared fixtures: every test gets its own storage dir, config file and node port.

Nothing here talks to a node on the default port: `KACHERY_DAEMON_PORT` is set to a free
loopback port per test, so a developer's own node is never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

import pytest

BIN = Path(sys.executable).parent

pytest_plugins = ["node_fixtures"]  # the `node` and `make_node` fixtures


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(name: str) -> str:
    """Path of a console script installed beside this interpreter."""
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        assert found, f"{name} is not installed (pip install -e .)"
        return found
    return str(path)


@pytest.fixture
def kenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, str]]:
    """An isolated environment, applied to this process and returned for subprocesses."""
    for key in list(os.environ):
        if key.startswith("KACHERY_"):
            monkeypatch.delenv(key)
    values = {
        "KACHERY_STORAGE_DIR": str(tmp_path / "storage"),
        "KACHERY_CONFIG": str(tmp_path / "config" / "config.toml"),
        "KACHERY_SYSTEM_CONFIG": str(tmp_path / "etc" / "config.toml"),
        "KACHERY_DAEMON_PORT": str(free_port()),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # the registry cache, per test
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    from kachery_core import plugins, probe

    probe._cache.clear()
    plugins._registry = None
    yield dict(os.environ)
    probe._cache.clear()
    plugins._registry = None


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.returncode = proc.returncode
        self.stdout_bytes: bytes = proc.stdout
        self.stdout: str = proc.stdout.decode("utf-8", "replace")
        self.stderr: str = proc.stderr.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<rc={self.returncode} out={self.stdout[:200]!r} err={self.stderr[:400]!r}>"


@pytest.fixture
def cli(kenv: Dict[str, str]):
    """Run `kachery-client ARGS...` as a real subprocess in the isolated environment."""

    def run(
        *args: str,
        env: Optional[Dict[str, str]] = None,
        input: Optional[bytes] = None,
        program: str = "kachery-client",
        timeout: float = 120,
    ) -> CliResult:
        full_env = dict(kenv if env is None else env)
        proc = subprocess.run(
            [command(program), *args],
            input=input,
            capture_output=True,
            env=full_env,
            timeout=timeout,
        )
        return CliResult(proc)

    return run


def write_random_file(path: Path, size: int, seed: int = 0) -> Path:
    """A file of `size` pseudo-random bytes, written in blocks (memory stays flat)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    block = 8 << 20
    with open(path, "wb") as f:
        remaining = size
        while remaining > 0:
            n = min(block, remaining)
            f.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            remaining -= n
    return path


def sha1_file(path: Path) -> str:
    from kachery_core.hashing import sha1_of_file

    return sha1_of_file(path)


def ids(cases: Sequence[object]) -> list:
    return [str(i) for i in range(len(cases))]
