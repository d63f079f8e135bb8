"""docs/lab-setup.md, run as written: real users and a real group made with useradd and
groupadd, the node run as its service user, members and a read-only user each as
themselves through runuser, their files in their own homes.

The page names its users, group and directory (kachery, kachery-users, alice, bob,
/srv/kachery), so the test runs only where none of them exists, and removes every one
afterwards. The page's step "install for every user" (into /opt and /usr/local/bin) is
stood in for by a directory on PATH with `kachery-client` and `kachery-daemon` scripts
that run this checkout with an interpreter every user may execute: a pyenv Python under
/root is out of other users' reach, so a system Python of the same version is used, and
the test is skipped, saying so, when there is none.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest
from conftest import free_port
from doc_runner import run_page
from other_user import same_version_interpreters

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "lab-setup.md"
USERS = ("alice", "bob", "kachery")
GROUP = "kachery-users"
SERVICE_DIR = Path("/srv/kachery")
PROGRAMS = {
    "kachery-client": "from kachery_cli.main import main",
    "kachery-daemon": "from kachery_daemon.cli import main",
}


def _exists_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _exists_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _why_not_here() -> Optional[str]:
    if os.geteuid() != 0:
        return "needs root (it adds users and a group)"
    missing = [
        p for p in ("useradd", "groupadd", "usermod", "userdel", "runuser") if not shutil.which(p)
    ]
    if missing:
        return f"needs {', '.join(missing)}"
    taken = [u for u in USERS if _exists_user(u)] + ([GROUP] if _exists_group(GROUP) else [])
    taken += [str(p) for p in (SERVICE_DIR, Path("/home/alice"), Path("/home/bob")) if p.exists()]
    if taken:
        return f"the page's names are taken on this machine: {', '.join(taken)}"
    return None


def _shared_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


def _interpreter_for_everyone(env: Dict[str, str], cwd: Path) -> Optional[str]:
    """A Python that user nobody may run (through runuser, as the page runs users' commands) and that imports this checkout, or None."""
    for python in same_version_interpreters():
        check = subprocess.run(
            [
                "runuser",
                "-u",
                "nobody",
                "--",
                python,
                "-c",
                "import kachery_cli.main, kachery_daemon.cli",
            ],
            env=env,
            cwd=str(cwd),
            capture_output=True,
            timeout=60,
        )
        if check.returncode == 0:
            return python
    return None


def _write_programs(bin_dir: Path, python: str) -> None:
    for name, entry in PROGRAMS.items():
        script = bin_dir / name
        script.write_text(
            f'#!/bin/sh\nexec {python} -c "import sys; {entry}; main(sys.argv[1:])" "$@"\n'
        )
        script.chmod(0o755)


def _remove_everything() -> List[str]:
    """Removes the page's users, group and directory; what could not be removed."""
    left = []
    for user in USERS:
        if _exists_user(user):
            subprocess.run(["userdel", "--remove", user], capture_output=True)
            if _exists_user(user):
                left.append(user)
    if _exists_group(GROUP):
        subprocess.run(["groupdel", GROUP], capture_output=True)
        if _exists_group(GROUP):
            left.append(GROUP)
    for path in (SERVICE_DIR, Path("/home/alice"), Path("/home/bob")):
        shutil.rmtree(path, ignore_errors=True)
    return left


@pytest.fixture
def lab_machine() -> Iterator[Dict[str, object]]:
    reason = _why_not_here()
    if reason:
        pytest.skip(reason)
    bin_dir, work, home = (
        _shared_dir("lab-bin-"),
        _shared_dir("lab-work-"),
        _shared_dir("lab-root-"),
    )
    scratch = Path(tempfile.mkdtemp(prefix="lab-scratch-"))
    env = {
        "PATH": os.pathsep.join([str(bin_dir), "/usr/sbin", "/usr/bin", "/sbin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]]),
        "KACHERY_DAEMON_PORT": str(free_port()),
        "KACHERY_SYSTEM_CONFIG": str(work / "no-system-config.toml"),
        "GRPC_ENABLE_FORK_SUPPORT": "false",
    }
    try:
        python = _interpreter_for_everyone(env, work)
        if python is None:
            pytest.skip(
                f"no Python {sys.version_info[0]}.{sys.version_info[1]} that other users may "
                f"run imports this checkout ({sys.executable} is out of their reach)"
            )
        _write_programs(bin_dir, python)
        yield {"env": env, "work": work, "scratch": scratch}
    finally:
        left = _remove_everything()
        for path in (bin_dir, work, home, scratch):
            shutil.rmtree(path, ignore_errors=True)
        assert not left, f"could not remove {left}"


def test_the_lab_setup_page_runs_with_real_users(lab_machine, capsys) -> None:
    env = lab_machine["env"]
    assert isinstance(env, dict)
    report = run_page(PAGE, lab_machine["work"], lab_machine["scratch"], env, "python3")  # type: ignore[arg-type]
    with capsys.disabled():
        print(f"\nlab-setup.md: {report.ran} blocks ran, {len(report.skipped)} not run")
        for reason in report.skipped:
            print(f"  not run: {reason}")
    assert report.ran >= 8
    # What the page promises, checked beside its own output: bob's token file is his alone,
    # and his loads landed in his own cache, not in the node's storage.
    token = Path("/home/bob/.kachery-token")
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.stat().st_uid == pwd.getpwnam("bob").pw_uid
    assert any(Path("/home/bob/.cache/kachery/storage").rglob("*"))
