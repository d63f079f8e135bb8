"""The example plugin `examples/kachery-mirror`, installed on its own, and a web server
publishing a storage directory for it to read: the fixtures of tests/system/test_mirror_*.py.

Registered in conftest.py's `pytest_plugins`, so the plugin is installed and the server
started once for the session however many modules use them (a fixture imported into each
module would be set up once per module); the helpers are imported by name.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, Type

import pytest
from build_tools import pip_build_args
from conftest import CliResult, command, free_port, write_random_file

from kachery_core.backend.base import Backend
from kachery_core.content.uri import ContentUri
from kachery_core.store.local import LocalStorage

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kachery-mirror"
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (EXAMPLE / "kachery_mirror" / "__init__.py").read_text(), re.M
)
LOOPBACK_ONLY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
LARGE = 25_000_000


@pytest.fixture(scope="session")
def mirror_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding kachery-mirror as pip installs it (package + dist-info)."""
    root = tmp_path_factory.mktemp("mirror-plugin")
    source = root / "src"  # pip builds inside the source tree: keep the repository clean
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = root / "site"
    args = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    args += pip_build_args()
    args += ["--no-deps", "--target", str(site), str(source)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert list(site.glob("kachery_mirror-*.dist-info")), proc.stdout
    return site


@pytest.fixture(scope="session")
def mirror_transport_class(mirror_site: Path) -> Type[Backend]:
    """`MirrorTransport` imported from the installed copy, for in-process tests.

    The site is on sys.path only while importing, so in-process registries built by
    other tests never discover the plugin's entry point.
    """
    sys.path.insert(0, str(mirror_site))
    try:
        module = importlib.import_module("kachery_mirror.transport")
    finally:
        sys.path.remove(str(mirror_site))
    return module.MirrorTransport  # type: ignore[no-any-return]


@dataclass
class Served:
    """A storage directory published by a web server, with files stored in it."""

    url: str
    root: Path
    small: str
    small_data: bytes
    large: str
    large_file: Path

    def publish(self, data: bytes) -> ContentUri:
        """Store bytes straight into the served directory (manifest made when large)."""
        return LocalStorage(self.root).store_bytes(data).uri()

    def object_url(self, sha1: str) -> str:
        return f"{self.url}/sha1/{sha1[0:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the web server exited at start"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the web server did not listen on port {port}")


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("mirror-served")
    storage = root / "storage"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
    env.update(
        KACHERY_STORAGE_DIR=str(storage),
        KACHERY_TRANSPORT="local",
        KACHERY_CONFIG=str(root / "config.toml"),
        KACHERY_SYSTEM_CONFIG=str(root / "system.toml"),
        XDG_CACHE_HOME=str(root / "cache"),
    )
    small = root / "small.txt"
    small_data = b"objects from a plain web server\n" * 100
    small.write_bytes(small_data)
    large = write_random_file(root / "large.bin", LARGE, seed=7)
    uris = []
    for path in (small, large):
        proc = subprocess.run(
            [command("kachery-client"), "store-file", str(path)], capture_output=True, env=env
        )
        assert proc.returncode == 0, proc.stderr
        uris.append(proc.stdout.decode().strip())
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
        + ["--directory", str(storage)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, server)
        yield Served(f"http://127.0.0.1:{port}", storage, uris[0], small_data, uris[1], large)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()


Run = Callable[..., CliResult]


@pytest.fixture
def mcli(cli, kenv: Dict[str, str], mirror_site: Path) -> Run:
    """`kachery-client ARGS...` with the plugin installed; keywords add env variables."""

    def run(*args: str, **env: str) -> CliResult:
        full = dict(kenv, PYTHONPATH=str(mirror_site), **LOOPBACK_ONLY)
        full.update(env)
        return cli(*args, env=full)

    return run


def write_config(kenv: Dict[str, str], text: str) -> None:
    path = Path(kenv["KACHERY_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def one_line_error(result: CliResult) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def cached(kenv: Dict[str, str], sha1: str) -> Path:
    return LocalStorage(Path(kenv["KACHERY_STORAGE_DIR"])).layout.object_path(sha1)


def staging_files(kenv: Dict[str, str]) -> list:
    return list((Path(kenv["KACHERY_STORAGE_DIR"]) / "tmp").glob("*"))


def info_rows(result: CliResult) -> Dict[str, str]:
    assert result.returncode == 0, result
    return dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines()
    )
