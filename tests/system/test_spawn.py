"""tests/spawn.py: subprocess starts without fork(), processes that die with the test process,
and the session's safety net that kills and names whatever a test left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
import spawn

TESTS = Path(__file__).resolve().parent.parent


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """True once `pid` has exited (a zombie counts as exited); works for non-children too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_subprocess_starts_never_fork(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: List[object] = []

    def fork_exec(*args: object) -> None:
        calls.append(args)
        raise AssertionError("subprocess fell back to fork()")

    import _posixsubprocess

    monkeypatch.setattr(_posixsubprocess, "fork_exec", fork_exec)
    assert subprocess.run(["true"]).returncode == 0
    out = subprocess.run(["pwd"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert out.strip() == str(tmp_path)
    assert subprocess.run("exit 3", shell=True).returncode == 3
    code = "import os; print(os.getsid(0) == os.getpid())"
    session = subprocess.run(
        [sys.executable, "-c", code], start_new_session=True, capture_output=True, text=True
    )
    assert session.stdout.strip() == "True", session
    env = {"PATH": os.environ["PATH"], "ONLY": "this"}
    shown = subprocess.check_output(["env"], env=env, text=True).split()
    assert sorted(shown) == ["ONLY=this", f"PATH={os.environ['PATH']}"]  # the guard adds nothing
    guarded = spawn.SafePopen(["env"], env=env, stdout=subprocess.PIPE, die_with_parent=True)
    assert sorted(guarded.communicate()[0].decode().split()) == sorted(shown)
    assert calls == []


def test_a_guarded_process_dies_with_its_parent() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import spawn\n"
        "p = spawn.SafePopen(['sleep', '60'], die_with_parent=True)\n"
        "print(p.pid, flush=True); sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(TESTS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child, timeout=0.5)
        os.kill(parent.pid, signal.SIGKILL)  # no cleanup code of the parent's runs
        assert _gone(child), f"process {child} outlived its parent"
    finally:
        parent.kill()
        parent.wait()


def test_leftovers_are_killed_and_named(request: pytest.FixtureRequest) -> None:
    leaked = subprocess.Popen(["sleep", "60"])
    lines = spawn.kill_leftovers(test=request.node.nodeid, grace=2)
    assert lines == [f"test {request.node.nodeid} leaked process {leaked.pid}: sleep 60"]
    assert leaked.poll() is not None


LEAKY_TEST = """
import subprocess, time

def test_leaks():
    subprocess.Popen(["sleep", "60"])

def test_waits(tmp_path):
    subprocess.Popen(["sleep", "61"])
    (tmp_path.parent.parent / "ready").write_text("")
    time.sleep(60)

def test_waits_with_a_node(node, tmp_path):
    (tmp_path.parent.parent / "node-pid").write_text(str(node.pid))
    (tmp_path.parent.parent / "ready").write_text("")
    time.sleep(60)
"""


def _run_inner_pytest(tmp_path: Path, test: str) -> subprocess.Popen:
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "test_leaky.py").write_text(LEAKY_TEST)
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest"]
    args += [f"--basetemp={tmp_path / 'base'}", f"test_leaky.py::{test}"]
    return subprocess.Popen(
        args, cwd=tmp_path / "inner", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _sleep_pids(output: str) -> List[int]:
    return [
        int(line.split("leaked process ")[1].split(":")[0])
        for line in output.splitlines()
        if "leaked process" in line
    ]


def test_a_session_that_leaks_a_process_fails_and_kills_it(tmp_path: Path) -> None:
    inner = _run_inner_pytest(tmp_path, "test_leaks")
    out = inner.communicate(timeout=120)[0].decode()
    assert inner.returncode == 1, out
    assert "ERROR: test test_leaky.py::test_leaks leaked process " in out, out
    assert ": sleep 60 (killed at session end)" in out, out
    (pid,) = _sleep_pids(out)
    assert _gone(pid)


def _interrupt_when_ready(tmp_path: Path, inner: subprocess.Popen) -> str:
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert inner.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        inner.send_signal(signal.SIGTERM)
        return inner.communicate(timeout=60)[0].decode()
    finally:
        inner.kill()
        inner.wait()


def test_sigterm_to_pytest_kills_what_its_tests_started(tmp_path: Path) -> None:
    out = _interrupt_when_ready(tmp_path, _run_inner_pytest(tmp_path, "test_waits"))
    assert "ERROR: test test_leaky.py::test_waits leaked process " in out, out
    (pid,) = _sleep_pids(out)
    assert _gone(pid)


def test_sigterm_to_pytest_still_runs_fixture_teardown(tmp_path: Path) -> None:
    out = _interrupt_when_ready(tmp_path, _run_inner_pytest(tmp_path, "test_waits_with_a_node"))
    assert "KeyboardInterrupt" in out and "leaked" not in out, out  # the `node` fixture stopped it
    assert _gone(int((tmp_path / "node-pid").read_text()))
