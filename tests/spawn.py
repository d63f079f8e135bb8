"""Starting processes from the pytest process without fork(), and never leaving one behind.

Why not plain `subprocess`: once grpc has run in a process, grpcio (core fork support is on
by default in its wheels) hooks fork() with pthread_atfork handlers that stop and restart its
threads. CPython 3.8's subprocess starts children with fork(), so each start runs those hooks
while other threads are inside grpc: under load that deadlocks or crashes the test process
(a script with busy grpc threads hung 3 runs out of 3 on 3.8). glibc's posix_spawn() and
vfork() (clone with CLONE_VM|CLONE_VFORK) run no atfork handlers: the same script then runs
clean. CPython >= 3.10 uses vfork() by default; 3.8 uses posix_spawn() only when it may
(close_fds=False, an executable path with a directory, no cwd, no preexec_fn, no new
session). `SafePopen` makes every start meet those conditions on every version:
- close_fds=False: safe since Python 3.4, which creates every descriptor non-inheritable
  (PEP 446); the child still gets exactly its stdin/stdout/stderr.
- the program is resolved to an absolute path against the child's PATH.
- cwd, a new session and "die with the parent" are done by `_GUARD`, a few lines of
  `python -I -S` that do them and then exec the program in place (same PID).
preexec_fn is refused: it needs fork() and runs Python in the forked child.

Considered and not chosen: a launcher process forked at session start (a second process to
keep alive, and Popen's pipes/wait/poll would have to be rebuilt over a socket) and calling
os.posix_spawn directly (the same, minus the launcher). Patching subprocess.Popen keeps every
test's `subprocess.run`/`Popen` call as written, and `run`, `check_output` and friends go
through it.

Every process started is recorded with the test that started it; `kill_leftovers()` ends any
still running (SIGTERM, then SIGKILL) and says which test leaked it. conftest calls it at
session end, on SIGTERM and at exit. Processes started with `die_with_parent=True` (nodes,
SeaweedFS) also get PR_SET_PDEATHSIG=SIGKILL: if pytest dies without cleaning up, the kernel
ends them. Linux delivers that signal when the *thread* that started the process exits, so
start such processes from the main thread (fixtures do).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional

_SUBPROCESS_POPEN = subprocess.Popen

# argv: GUARD EXECUTABLE CWD NEW_SESSION PARENT_PID KEEP_LC_CTYPE ARGV0 ARGS...
_GUARD = """\
import os, sys
exe, cwd, new_session, parent, keep_lc_ctype = sys.argv[1:6]
if keep_lc_ctype == "0":
    os.environ.pop("LC_CTYPE", None)  # set by this interpreter's locale coercion, not the caller
if new_session == "1":
    os.setsid()
if parent != "0":
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG, SIGKILL
        sys.exit("spawn guard: prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(parent):
        os._exit(1)  # the parent died before the death signal was armed
if cwd:
    os.chdir(cwd)
os.execv(exe, sys.argv[6:])
"""


@dataclass
class Started:
    pid: int
    test: str
    argv: str
    popen: weakref.ref[subprocess.Popen]


_started: List[Started] = []
_lock = threading.Lock()
current_test = "(outside a test)"  # set by conftest around each test


def _resolve(program: str, env: Optional[Mapping[str, str]]) -> str:
    if os.path.dirname(program):
        return os.path.abspath(program)
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    return shutil.which(program, path=path) or program


class SafePopen(_SUBPROCESS_POPEN):  # type: ignore[misc, valid-type]
    """subprocess.Popen that never fork()s the (multi-threaded, grpc-using) test process."""

    def __init__(self, args: Any, *more: Any, die_with_parent: bool = False, **kwargs: Any):
        if more:  # positional bufsize, executable, ...: spell them by keyword instead
            raise TypeError("SafePopen takes only `args` positionally")
        if kwargs.get("preexec_fn") is not None:
            raise TypeError("preexec_fn runs Python in a fork()ed child: not safe here")
        if kwargs.get("shell"):
            args = [kwargs.pop("executable", None) or "/bin/sh", "-c", args]
            kwargs["shell"] = False
        argv = [os.fspath(a) for a in ([args] if isinstance(args, (str, bytes)) else args)]
        shown = " ".join(map(os.fsdecode, argv))[:300]
        env = kwargs.get("env")
        executable = _resolve(os.fsdecode(kwargs.pop("executable", None) or argv[0]), env)
        cwd = kwargs.pop("cwd", None)
        new_session = bool(kwargs.pop("start_new_session", False))
        if cwd is not None or new_session or die_with_parent:
            guard = [
                sys.executable,
                "-I",
                "-S",
                "-c",
                _GUARD,
                executable,
                os.fspath(cwd) if cwd is not None else "",
                "1" if new_session else "0",
                str(os.getpid()) if die_with_parent else "0",
                "1" if "LC_CTYPE" in (env if env is not None else os.environ) else "0",
            ]
            argv, executable = guard + argv, sys.executable
        if not kwargs.get("pass_fds"):
            kwargs["close_fds"] = False  # posix_spawn() needs it (see the module docstring)
        super().__init__(argv, executable=executable, **kwargs)
        with _lock:
            _started.append(Started(self.pid, current_test, shown, weakref.ref(self)))


def install() -> None:
    """Route every subprocess start in this process through SafePopen."""
    subprocess.Popen = SafePopen  # type: ignore[misc]


def _alive(entry: Started) -> bool:
    popen = entry.popen()
    if popen is not None:
        return popen.poll() is None
    try:  # only our own children can be waited for, so a reused PID never matches
        pid, _ = os.waitpid(entry.pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return pid == 0


def _wait_gone(entry: Started, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(entry):
            return True
        time.sleep(0.05)
    return not _alive(entry)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def kill_leftovers(test: Optional[str] = None, grace: float = 5.0) -> List[str]:
    """End every recorded process still running (or those `test` started); one line per
    process, naming its test."""
    with _lock:
        entries = [e for e in _started if test is None or e.test == test]
        _started[:] = [e for e in _started if not (test is None or e.test == test)]
    leaked = [entry for entry in entries if _alive(entry)]
    for entry in leaked:
        _signal(entry.pid, signal.SIGTERM)
    for entry in leaked:
        if not _wait_gone(entry, grace):
            _signal(entry.pid, signal.SIGKILL)
            _wait_gone(entry, grace)
    return [f"test {e.test} leaked process {e.pid}: {e.argv}" for e in leaked]
