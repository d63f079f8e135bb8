"""A second, real user for tests: a lab member who runs the client beside a node they do
not own.

    def test_something(other_user, make_node):
        result = other_user.client("info", env={...})    # kachery-client as that uid

The fixture needs root (it runs `useradd`, and `setpriv` to become the user); elsewhere
the tests that use it are skipped, as nothing short of a second uid shows what the file
modes do. The user gets a fresh home directory (0700, their own) under /tmp, outside the
pytest temp tree (which only root can enter), and is removed with `userdel` afterwards.

The client runs under this interpreter when the user may execute it, else under a system
interpreter of the same version (a pyenv Python under /root is out of their reach), with
this checkout and its site-packages on PYTHONPATH: the same code, the same packages.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest
from conftest import CliResult

REPO = Path(__file__).resolve().parent.parent
_CLIENT = "import sys; from kachery_cli.main import main; main(sys.argv[1:])"
_DAEMON = "import sys; from kachery_daemon.cli import main; main(sys.argv[1:])"


@dataclass
class OtherUser:
    name: str
    uid: int
    gid: int
    home: Path
    python: str = ""
    base_env: Dict[str, str] = field(default_factory=dict)

    def argv(self, *args: str) -> List[str]:
        """`args` run as this user (their uid, gid and groups; the environment kept)."""
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--init-groups",
            "--",
            *args,
        ]

    def env(self, **extra: str) -> Dict[str, str]:
        """The user's environment: their home and cache, no KACHERY_* but `extra`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
        env.update(self.base_env)
        env.update(extra)
        return env

    def run(self, code: str, args: List[str], env: Dict[str, str], timeout: float) -> CliResult:
        proc = subprocess.run(
            self.argv(self.python, "-c", code, *args),
            env=env,
            cwd=str(self.home),
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return CliResult(proc)

    def client(self, *args: str, env: Dict[str, str], timeout: float = 60) -> CliResult:
        """`kachery-client ARGS` as this user."""
        return self.run(_CLIENT, list(args), env, timeout)

    def daemon(self, *args: str, env: Dict[str, str], timeout: float = 60) -> CliResult:
        """`kachery-daemon ARGS` as this user."""
        return self.run(_DAEMON, list(args), env, timeout)

    def write_private(self, name: str, text: str, mode: int = 0o600) -> Path:
        """A file of theirs in their home directory, with `mode`."""
        path = self.home / name
        path.write_text(text)
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)
        return path


def same_version_interpreters() -> List[str]:
    """This interpreter, then the system's of the same version: the ones to try for a user
    who may not run this one (a pyenv Python under /root)."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return [sys.executable] + [
        found
        for found in (shutil.which(version, path=p) for p in ("/usr/bin", "/usr/local/bin"))
        if found
    ]


def _interpreter(user: OtherUser, env: Dict[str, str]) -> Optional[str]:
    """An interpreter the user may run that imports this checkout, or None."""
    for python in same_version_interpreters():
        check = subprocess.run(
            user.argv(python, "-c", "import kachery_cli.main, kachery_daemon.cli"),
            env=env,
            cwd=str(user.home),
            capture_output=True,
            timeout=60,
        )
        if check.returncode == 0:
            return python
    return None


def account(name: str) -> OtherUser:
    """The account `name` (made by the caller, who also removes it and `user.home`) with a
    fresh home of its own (0700), its environment, and an interpreter it may run that
    imports this checkout; skips, home removed, when there is none."""
    import pwd

    entry = pwd.getpwnam(name)
    home = Path(tempfile.mkdtemp(prefix=f"{name}-home-"))
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    user = OtherUser(name, entry.pw_uid, entry.pw_gid, home)
    purelib = sysconfig.get_paths()["purelib"]
    user.base_env = {
        "HOME": str(home),
        "USER": name,
        "LOGNAME": name,
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "KACHERY_CONFIG": str(home / ".config" / "kachery" / "config.toml"),
        "KACHERY_SYSTEM_CONFIG": str(home / "no-system-config.toml"),
        "PYTHONPATH": os.pathsep.join([str(REPO), purelib]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    python = _interpreter(user, user.env())
    if python is None:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"no Python that user {name} may run imports this checkout")
    user.python = python
    return user


@pytest.fixture
def other_user() -> Iterator[OtherUser]:
    """A fresh user account with its own home; removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("needs root, useradd and setpriv to run as a second user")
    name = f"kt{secrets.token_hex(4)}"
    made = subprocess.run(
        ["useradd", "--no-create-home", "--user-group", name], capture_output=True
    )
    if made.returncode:
        pytest.skip(f"useradd failed: {made.stderr.decode().strip()}")
    home: Optional[Path] = None
    try:
        user = account(name)
        home = user.home
        yield user
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
