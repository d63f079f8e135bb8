"""A real `kachery-daemon` process on a free loopback port, for tests.

    def test_something(node):
        node.url, node.port, node.storage_dir, node.auth_code(), node.kill(), node.restart()

Every process started here is stopped in the fixture's teardown (SIGTERM, then SIGKILL), is
started without fork() (tests/spawn.py) and dies with the test process if that dies first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional

import pytest
from conftest import command, free_port
from spawn import SafePopen

if TYPE_CHECKING:
    from kachery_transports.remote import RemoteDaemonTransport


class NodeProcess:
    def __init__(
        self,
        storage_dir: Path,
        env: Dict[str, str],
        extra_args: Optional[List[str]] = None,
        prefix: Optional[List[str]] = None,
    ) -> None:
        """`prefix` runs the node through another program (`setpriv` to run it as
        another user: tests/daemon/test_attack_paths.py)."""
        self.storage_dir = storage_dir
        self.prefix = list(prefix or [])
        self.env = env
        self.port = int(env["KACHERY_DAEMON_PORT"])
        self.extra_args = list(extra_args or [])
        self.proc: Optional[subprocess.Popen] = None
        self.log = storage_dir.parent / f"node-{self.port}.log"

    @property
    def tls(self) -> bool:
        return "--tls-cert" in self.extra_args

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> None:
        args = [
            *self.prefix,
            command("kachery-daemon"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-dir",
            str(self.storage_dir),
            *self.extra_args,
        ]
        with open(self.log, "ab") as log:
            self.proc = SafePopen(
                args,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                die_with_parent=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"node exited with {self.proc.returncode}: {self.log.read_text()}"
                )
            if self.probe() is not None:
                return
            time.sleep(0.05)
        raise AssertionError(f"node did not answer within {timeout} s: {self.log.read_text()}")

    def probe(self) -> Optional[dict]:
        context = None
        if self.tls:  # the test's own self-signed node: only "is it up?" here
            import ssl

            context = ssl._create_unverified_context()
        try:
            with urllib.request.urlopen(
                self.url + "/probe", timeout=1, context=context
            ) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def auth_code(self) -> str:
        return (self.storage_dir / "client-auth").read_text().strip()

    def headers(self) -> Dict[str, str]:
        return {"KACHERY-CLIENT-AUTH-CODE": self.auth_code()}

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def status_mib(self, field: str, default: Optional[float] = None) -> float:
        """A size from /proc/<pid>/status (`VmRSS`, `VmHWM`, ...) in MiB; `default` when
        the field is absent (none given: an error)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        if default is None:
            raise AssertionError(f"no {field} in /proc/{self.pid}/status")
        return default

    def peak_rss_mib(self) -> float:
        return self.status_mib("VmHWM", 0.0)


def make_token(node: NodeProcess, label: str, scope: Optional[str] = None) -> str:
    """A token of `scope` (the node's default when None) for `node`, made by
    `kachery-daemon token create` on its storage directory."""
    extra = ["--scope", scope] if scope else []
    made = subprocess.run(
        [command("kachery-daemon"), "token", "create", "--label", label, *extra]
        + ["--storage-dir", str(node.storage_dir)],
        capture_output=True,
        text=True,
        env=node.env,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture
def node(kenv: Dict[str, str], tmp_path: Path) -> Iterator[NodeProcess]:
    """A running node whose storage dir is the test's KACHERY_STORAGE_DIR."""
    storage = Path(kenv["KACHERY_STORAGE_DIR"])
    process = NodeProcess(storage, kenv, ["--auth-rotate-seconds", "300"])
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture
def make_node(kenv: Dict[str, str], tmp_path: Path) -> Iterator:
    """Start extra nodes with their own storage dir, port and arguments."""
    started: List[NodeProcess] = []

    def make(*args: str, storage_dir: Optional[Path] = None) -> NodeProcess:
        port = free_port()
        env = dict(kenv, KACHERY_DAEMON_PORT=str(port))
        process = NodeProcess(storage_dir or tmp_path / f"storage-{port}", env, list(args))
        started.append(process)  # first: a node that fails to answer is still stopped
        process.start()
        return process

    try:
        yield make
    finally:
        for process in started:
            process.stop()


def remote_transport(port: int, cache: Path, token: str) -> RemoteDaemonTransport:
    """A `remote` transport to the node (or proxy) on a loopback port, with a token and a
    cache of its own."""
    from kachery_core.settings.config import resolve_config
    from kachery_transports.remote import RemoteDaemonTransport

    settings = {
        "daemon_host": "127.0.0.1",
        "daemon_port": port,
        "storage_dir": str(cache),
        "auth_token": token,
    }
    return RemoteDaemonTransport(resolve_config(settings, explicit_source="test"))
