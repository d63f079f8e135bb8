"""The conventions of command-line tools, checked on real `kachery-client` processes:
Ctrl-C exits 130 and leaves no partial file; every `--help` ends with examples, and the
group's help shows each command's whole first line; `completion SHELL` prints a script the
shell accepts, and the completion protocol it installs lists the commands."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from conftest import command, write_random_file
from proxies import proxy_launcher

STALL_PROXY = str(Path(__file__).parent.parent / "stall_proxy.py")


def _files_below(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _wait_for(condition, proc: subprocess.Popen, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def _interrupt(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """Ctrl-C as a terminal sends it: SIGINT to the process; then its result."""
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _assert_interrupted(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 130, done
    assert done.stderr.decode().splitlines() == ["Error: interrupted"], done
    assert done.stdout == b"", done


def test_ctrl_c_during_a_store_exits_130_and_leaves_no_partial_file(
    kenv: Dict[str, str], tmp_path: Path
) -> None:
    storage = Path(kenv["KACHERY_STORAGE_DIR"])
    proc = subprocess.Popen(
        [command("kachery-client"), "store-file", "-"],
        env=kenv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(3 << 20))  # part of the stream; the rest never comes
    proc.stdin.flush()
    _wait_for(lambda: _files_below(storage) != [], proc, "started staging the stream")
    assert any(name.startswith("tmp/") for name in _files_below(storage))  # mid-store
    done = _interrupt(proc)
    proc.stdin.close()
    _assert_interrupted(done)
    assert _files_below(storage) == []  # neither the staging file nor an object


@pytest.fixture
def start_proxy() -> Iterator:
    with proxy_launcher(STALL_PROXY) as start:
        yield start


def test_ctrl_c_during_a_load_exits_130_and_leaves_no_partial_file(
    cli, kenv: Dict[str, str], node, start_proxy, tmp_path: Path
) -> None:
    data = write_random_file(tmp_path / "recording.bin", 5 << 20)
    stored = cli("store-file", str(data))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    stalled = tmp_path / "stalled"
    port = start_proxy(node.port, uri.split("/")[2], stalled)
    token = cli(
        "token", "create", "--label", "laptop", "--scope", "read",
        "--storage-dir", str(node.storage_dir), program="kachery-daemon",
    )  # fmt: skip
    assert token.returncode == 0, token
    cache, out = tmp_path / "laptop-cache", tmp_path / "out"
    out.mkdir()
    env = dict(
        kenv,
        KACHERY_BACKEND="remote",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_DAEMON_PORT=str(port),
        KACHERY_STORAGE_DIR=str(cache),
        KACHERY_AUTH_TOKEN=token.stdout.strip(),
    )
    proc = subprocess.Popen(
        [command("kachery-client"), "load-file", uri, "--dest", str(out / "copy.bin")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for(stalled.exists, proc, "got half of the download")
    assert any(name.startswith("tmp/") for name in _files_below(cache))  # half written
    _assert_interrupted(_interrupt(proc))
    assert _files_below(cache) == []  # neither the half download nor an object
    assert _files_below(out) == []
