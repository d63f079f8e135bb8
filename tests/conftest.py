"""Shared fixtures: every test gets its own storage dir, config file and node port.

Nothing here talks to a node on the default port: `KACHERY_DAEMON_PORT` is set to a free
loopback port per test, so a developer's own node is never touched.

Processes: every subprocess a test starts goes through tests/spawn.py (no fork() of this
grpc-using process; each one recorded). At session end, on SIGTERM and at exit, any still
running is killed and reported as "test X leaked process ...", which fails the session.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys

# grpcio's core fork support is on unless this says otherwise: then every fork() of this
# process runs grpc's atfork handlers, which deadlock or crash while other threads are in
# grpc (seen on Python 3.8, whose subprocess forks). spawn.py makes subprocess starts avoid
# fork() altogether; this turns the handlers off for any fork left (multiprocessing, a
# pass_fds start). It must be set before grpc is first imported, which is why it is here.
# Children inherit it; it only changes what grpc does at fork(), which no node does.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
assert "grpc" not in sys.modules, "grpc was imported before tests/conftest.py"

import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict, Iterator, List, Optional, Sequence  # noqa: E402

import ports  # noqa: E402
import pytest  # noqa: E402
import spawn  # noqa: E402

spawn.install()

BIN = Path(sys.executable).parent
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""Set in each worker of a parallel run (`scripts/test.sh` runs `pytest -n`)."""

# Fixtures registered once for the whole session (a fixture imported into two test modules
# would be set up once per module): `node`, `make_node`; `grpc_node`, `genv`; the channel
# tests' S3 store and `lab`; the installed example plugin and the web server it reads; `other_user`;
# and the CPU-seconds per test file, when KACHERY_TEST_CPU_LOG asks for them.
pytest_plugins = [
    "cpu_accounting",
    "node_fixtures",
    "grpc_fixtures",
    "channel_fixtures",
    "mirror_fixtures",
    "other_user",
]


def _kill_leftovers_at_exit() -> None:
    for line in spawn.kill_leftovers():
        print(f"error: {line} (killed at exit)", file=sys.stderr)


atexit.register(_kill_leftovers_at_exit)


def _on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into an interrupt: pytest then tears down fixtures and finishes the
    session, whose safety net below kills whatever is left."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends pytest at once
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)


TEST_TIMEOUT_SECONDS = 600  # generous: the slowest test takes about a minute on a busy machine


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """With pytest-timeout installed, a hung test fails after TEST_TIMEOUT_SECONDS instead of
    hanging the run; its teardown still stops what it started. `--timeout N` overrides."""
    if not config.pluginmanager.hasplugin("timeout") or config.getoption("timeout") is not None:
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_SECONDS))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    spawn.current_test = item.nodeid  # processes started now are this test's
    yield
    spawn.current_test = "(between tests)"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The safety net: fixtures stop what they start; anything still running is a bug.
    trylast: after pytest's own session finish has torn down the fixtures of an interrupted
    run, so only what no teardown stopped is reported."""
    if getattr(session.config.option, "numprocesses", None) and not _XDIST_WORKER:
        return  # the controller of an xdist run: its workers run the tests and do this check
    leaked: List[str] = spawn.kill_leftovers()
    if not leaked:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for line in leaked:
        if reporter is not None:
            reporter.write_line(f"ERROR: {line} (killed at session end)", red=True, bold=True)
        else:
            print(f"ERROR: {line} (killed at session end)", file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def free_port() -> int:
    return ports.free_ports(1)[0]


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
    from kachery_client.backends import registry as plugins
    from kachery_core.protocol import probe

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
    from kachery_core.content.hashing import sha1_of_file

    return sha1_of_file(path)


def ids(cases: Sequence[object]) -> list:
    return [str(i) for i in range(len(cases))]
