"""The example plugin `examples/kachery-mirror`, installed on its own and used for real.

The package is pip-installed (without dependencies) into a private directory that only
the `kachery-client` subprocesses get on PYTHONPATH: kachery finds it through its entry
point, as it would a user's install, and this test environment stays untouched. The
objects come from `python -m http.server` serving a storage directory that the embedded
backend filled with `kachery-client store-file`. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, Type

import pytest
from conftest import CliResult, command, free_port, sha1_file, write_random_file

from kachery_client.testing import ContractBackend, TransportContract
from kachery_core.backend.base import DaemonTransport
from kachery_core.content.manifest import CHUNK_SIZE, chunk_bounds
from kachery_core.content.uri import ContentUri, parse_uri
from kachery_core.settings.config import resolve_config
from kachery_core.store.local import LocalStorage

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kachery-mirror"
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (EXAMPLE / "kachery_mirror" / "__init__.py").read_text(), re.M
)
LOOPBACK_ONLY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
LARGE = 25_000_000


def _version_tuple(text: str) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def _can_build_offline() -> bool:
    """True when this interpreter can build the example without fetching build tools."""
    from importlib import metadata

    try:
        setuptools = _version_tuple(metadata.version("setuptools"))
    except metadata.PackageNotFoundError:
        return False
    if setuptools >= (70, 1):  # builds wheels by itself
        return True
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return False
    return setuptools >= (61, 0)


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
    if _can_build_offline():
        args += ["--no-build-isolation", "--no-index"]
    # else pip fetches setuptools for an isolated build from the package index, as the
    # project's own `pip install -e .` in scripts/test.sh does
    args += ["--no-deps", "--target", str(site), str(source)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert list(site.glob("kachery_mirror-*.dist-info")), proc.stdout
    return site


@pytest.fixture(scope="session")
def mirror_transport_class(mirror_site: Path) -> Type[DaemonTransport]:
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


@pytest.fixture(scope="module")
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


# -- discovery ----------------------------------------------------------------------


def test_backends_lists_mirror_with_its_package(mcli: Run, cli, kenv) -> None:
    listed = mcli("backends")
    assert listed.returncode == 0, listed
    line = next(x for x in listed.stdout.splitlines() if x.startswith("mirror "))
    assert VERSION is not None
    assert f"kachery-mirror {VERSION.group(1)}" in line and "read-only" in line
    assert "BROKEN" not in listed.stdout
    assert "mirror" not in cli("backends").stdout  # installed only for those subprocesses


def test_plugin_module_imports_nothing_heavy(kenv, mirror_site: Path) -> None:
    """kachery imports the plugin module on every registry rebuild: no requests there."""
    code = (
        "import sys, kachery_mirror.plugin\n"
        "heavy = ('requests', 'urllib3', 'kachery_mirror.transport', 'kachery_mirror.fetch')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    env = dict(kenv, PYTHONPATH=str(mirror_site))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- choosing the backend -------------------------------------------------------------


def test_load_file_by_flag_verifies_and_caches(mcli: Run, kenv, served: Served) -> None:
    loaded = mcli("--transport", "mirror", "load-file", served.small, KACHERY_MIRROR_URL=served.url)
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    sha1 = parse_uri(served.small).sha1
    assert path == cached(kenv, sha1)
    assert path.read_bytes() == served.small_data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert staging_files(kenv) == []
    dead = f"http://127.0.0.1:{free_port()}"  # a cached object needs no server
    again = mcli("--transport", "mirror", "load-file", served.small, KACHERY_MIRROR_URL=dead)
    assert again.returncode == 0 and Path(again.stdout.strip()) == path, again


def test_env_transport_and_config_file_url(mcli: Run, kenv, served: Served) -> None:
    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}/"\n')
    info = info_rows(mcli("info", KACHERY_TRANSPORT="mirror"))
    assert info["backend"] == "mirror" and "KACHERY_TRANSPORT" in info["chosen because"]
    assert info["node address"] == served.url
    assert info["storage dir"] == kenv["KACHERY_STORAGE_DIR"]
    whole = mcli("cat-file", served.small, KACHERY_TRANSPORT="mirror")
    assert whole.returncode == 0 and whole.stdout_bytes == served.small_data, whole
    assert cached(kenv, parse_uri(served.small).sha1).is_file()
    part = mcli("cat-file", served.small, "--start", "5", "--end", "70", KACHERY_TRANSPORT="mirror")
    assert part.stdout_bytes == served.small_data[5:70], part
    tail = mcli("cat-file", served.small, "--start", "3000", KACHERY_TRANSPORT="mirror")
    assert tail.stdout_bytes == served.small_data[3000:], tail


def test_profile_selects_the_mirror(mcli: Run, kenv, served: Served) -> None:
    write_config(
        kenv,
        '[profiles.lab]\ntransport = "mirror"\n\n'
        f'[profiles.lab.plugins.mirror]\nurl = "{served.url}"\n',
    )
    plain = mcli("cat-file", served.small)
    assert "not found" in one_line_error(plain)  # the embedded storage does not have it yet
    info = info_rows(mcli("--profile", "lab", "info"))
    assert info["backend"] == "mirror" and info["node address"] == served.url
    through = mcli("--profile", "lab", "cat-file", served.small)
    assert through.returncode == 0 and through.stdout_bytes == served.small_data, through
    # The cache is the ordinary storage directory: the embedded backend now has it too.
    local = mcli("cat-file", served.small)
    assert local.returncode == 0 and local.stdout_bytes == served.small_data, local


def test_selection_hook_chooses_the_mirror_on_listed_hosts(mcli: Run, kenv, served: Served) -> None:
    host = json.dumps(socket.gethostname())  # a JSON string is a valid TOML string
    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\nselect_on_hosts = [{host}]\n')
    info = info_rows(mcli("info"))
    assert info["backend"] == "mirror"
    assert "plugin 'mirror'" in info["chosen because"]
    loaded = mcli("load-file", served.small)
    assert loaded.returncode == 0 and Path(loaded.stdout.strip()).read_bytes() == served.small_data

    pattern = json.dumps(socket.gethostname()[:1] + "*")
    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\nselect_on_hosts = [{pattern}]\n')
    assert info_rows(mcli("info"))["backend"] == "mirror"

    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\nselect_on_hosts = ["no-such-*"]\n')
    assert info_rows(mcli("info"))["backend"] == "local"

    write_config(kenv, f"[plugins.mirror]\nselect_on_hosts = [{host}]\n")  # no url: pass
    assert info_rows(mcli("info"))["backend"] == "local"


def test_bad_selection_setting_is_a_warning(mcli: Run, kenv, served: Served) -> None:
    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\nselect_on_hosts = 5\n')
    shown = mcli("info")
    assert info_rows(shown)["backend"] == "local"
    assert shown.stderr.startswith("Warning: plugin 'mirror' ignored")
    assert "select_on_hosts" in shown.stderr
    assert shown.stderr.count("\n") == 1  # one line, once

    debugged = mcli("--debug", "info")
    assert info_rows(debugged)["backend"] == "local"
    warning, rest = debugged.stderr.split("\n", 1)
    assert f"{warning}\n" == shown.stderr
    assert rest.startswith("Traceback") and "kachery_mirror/settings.py" in rest


def test_plugin_imports_backend_spec_from_the_hook_specs() -> None:
    source = (EXAMPLE / "kachery_mirror" / "plugin.py").read_text()
    assert "from kachery_core.backend.hookspecs import BackendSpec, hookimpl" in source


# -- large files --------------------------------------------------------------------


@pytest.mark.slow
def test_large_file_with_manifest(mcli: Run, kenv, served: Served) -> None:
    uri = parse_uri(served.large)
    assert uri.manifest_sha1 is not None
    env = {"KACHERY_TRANSPORT": "mirror", "KACHERY_MIRROR_URL": served.url}
    loaded = mcli("load-file", served.large, **env)
    assert loaded.returncode == 0, loaded
    assert sha1_file(Path(loaded.stdout.strip())) == uri.sha1 == sha1_file(served.large_file)
    start, end = CHUNK_SIZE - 100, CHUNK_SIZE + 100  # across the chunk boundary
    part = mcli("cat-file", served.large, "--start", str(start), "--end", str(end), **env)
    with open(served.large_file, "rb") as f:
        f.seek(start)
        assert part.stdout_bytes == f.read(end - start)


@pytest.mark.slow
def test_large_file_assembled_from_chunks(mcli: Run, kenv, served: Served, tmp_path) -> None:
    """The server has the manifest and the chunks but not the whole file."""
    data = os.urandom(CHUNK_SIZE + 1_000_003)
    scratch = LocalStorage(tmp_path / "scratch")
    whole = scratch.store_bytes(data)
    assert whole.manifest_sha1 is not None
    publish = LocalStorage(served.root)
    publish.store_bytes(scratch.require(whole.manifest_sha1).read_bytes())
    chunks = [publish.store_bytes(data[s:e]).sha1 for s, e in chunk_bounds(len(data))]
    assert not publish.has(whole.sha1)

    uri = str(whole.uri("big.bin"))
    loaded = mcli("--transport", "mirror", "load-file", uri, KACHERY_MIRROR_URL=served.url)
    assert loaded.returncode == 0, loaded
    assert hashlib.sha1(Path(loaded.stdout.strip()).read_bytes()).hexdigest() == whole.sha1
    assert all(cached(kenv, c).is_file() for c in chunks)
    assert staging_files(kenv) == []


# -- failures -----------------------------------------------------------------------


def test_corrupt_object_is_refused_and_not_cached(mcli: Run, kenv, served: Served) -> None:
    data = os.urandom(10_000)
    uri = served.publish(data)
    path = LocalStorage(served.root).layout.object_path(uri.sha1)
    path.parent.chmod(0o755)
    path.chmod(0o644)
    path.write_bytes(bytes(b ^ 0xFF for b in data))  # same size, wrong bytes
    for args in (["load-file", str(uri)], ["cat-file", str(uri)]):
        failed = mcli("--transport", "mirror", *args, KACHERY_MIRROR_URL=served.url)
        line = one_line_error(failed)
        assert "corrupt" in line and served.object_url(uri.sha1) in line, line
        assert failed.stdout == ""
    assert not cached(kenv, uri.sha1).exists()
    assert staging_files(kenv) == []


def test_missing_object_is_not_found(mcli: Run, served: Served) -> None:
    sha1 = hashlib.sha1(os.urandom(16)).hexdigest()
    failed = mcli("--transport", "mirror", "load-file", f"sha1://{sha1}/x.bin")
    # no url yet: the error says both ways to set it
    line = one_line_error(failed)
    assert "[plugins.mirror]" in line and "KACHERY_MIRROR_URL" in line, line
    failed = mcli(
        "--transport", "mirror", "load-file", f"sha1://{sha1}/x.bin", KACHERY_MIRROR_URL=served.url
    )
    line = one_line_error(failed)
    assert f"sha1://{sha1}/x.bin" in line and served.object_url(sha1) in line and "404" in line


def test_server_down_or_silent_is_a_clean_error(mcli: Run, kenv, served: Served) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    failed = mcli("--transport", "mirror", "load-file", served.small, KACHERY_MIRROR_URL=dead)
    line = one_line_error(failed)
    assert f"cannot reach the mirror at {dead}: connection refused" in line, line
    assert "is the web server running?" in line

    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        write_config(kenv, f'[plugins.mirror]\nurl = "{url}"\ntimeout = 1\n')
        started = time.monotonic()
        failed = mcli("--transport", "mirror", "cat-file", served.small)
        assert time.monotonic() - started < 30
    assert "no answer within 1 s" in one_line_error(failed)
    assert staging_files(kenv) == []


def test_writes_are_refused_as_read_only(mcli: Run, kenv, served: Served, tmp_path) -> None:
    src = tmp_path / "new.txt"
    src.write_text("not for the mirror")
    for command_name in ("store-file", "link-file"):
        failed = mcli(
            "--transport", "mirror", command_name, str(src), KACHERY_MIRROR_URL=served.url
        )
        line = one_line_error(failed)
        assert "the 'mirror' backend does not support" in line and "read-only" in line, line


def test_settings_are_checked(mcli: Run, kenv, served: Served, tmp_path) -> None:
    cache = tmp_path / "mirror-cache"
    env = {"KACHERY_TRANSPORT": "mirror", "KACHERY_MIRROR_URL": served.url}
    loaded = mcli("load-file", served.small, KACHERY_MIRROR_CACHE_DIR=str(cache), **env)
    assert loaded.returncode == 0, loaded
    assert Path(loaded.stdout.strip()).parent.parent.parent.parent.parent == cache
    write_config(kenv, "[plugins.mirror]\nurll = 'typo'\n")
    line = one_line_error(mcli("info", **env))
    assert "unknown key 'urll'" in line and "url, cache_dir" in line
    write_config(kenv, "")
    line = one_line_error(mcli("info", KACHERY_TRANSPORT="mirror", KACHERY_MIRROR_URL="ftp://x"))
    assert "invalid mirror URL 'ftp://x' (environment variable KACHERY_MIRROR_URL)" in line


# -- the transport contract, in process ---------------------------------------------------


class TestMirrorContract(TransportContract):
    can_store = can_link = has_mutables = has_feeds = False

    @pytest.fixture
    def backend(
        self,
        kenv: Dict[str, str],
        served: Served,
        mirror_transport_class: Type[DaemonTransport],
        monkeypatch: pytest.MonkeyPatch,
    ) -> Iterator[ContractBackend]:
        for key, value in LOOPBACK_ONLY.items():
            monkeypatch.setenv(key, value)
        write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\n')
        transport = mirror_transport_class.from_config(resolve_config())
        yield ContractBackend(transport, served.publish)
        transport.close()
