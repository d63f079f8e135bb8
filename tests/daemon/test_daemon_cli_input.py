"""Bad input to `kachery-daemon`: one line naming the value and what to do, and nothing
written first (issue 18, items 14, 19 and 20). Every command runs as a real process."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from conftest import command, free_port
from spawn import SafePopen


def daemon(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [command("kachery-daemon"), *args], capture_output=True, text=True, env=env, timeout=60
    )


# -- 14. token labels -----------------------------------------------------------------


FORGED = "laptop\n0123456789ab  2026-01-01 00:00  admin  root's laptop"


def node_storage_dir(tmp_path: Path) -> Path:
    """A node's storage directory, as its first start leaves it (key and kachery-node-id)."""
    from kachery_daemon.node_files import load_identity

    storage = tmp_path / "storage"
    storage.mkdir()
    load_identity(storage, None)
    return storage


@pytest.mark.parametrize(
    "label", [FORGED, "tab\there", "bell\x07", "reversed\u202ename", "line\u2028sep"]
)
def test_a_label_that_is_not_printable_is_refused_at_create(kenv, tmp_path, label) -> None:
    storage = node_storage_dir(tmp_path)
    made = daemon("token", "create", "--label", label, "--storage-dir", str(storage), env=kenv)
    assert made.returncode == 1, made
    assert made.stdout == ""  # no token printed
    lines = made.stderr.strip().splitlines()
    assert len(lines) == 1 and "not printable" in lines[0] and "--label" in lines[0], lines
    assert repr(label.strip()) in lines[0]  # the value, escaped
    assert not (storage / "kachery-tokens.json").exists()


def test_token_list_shows_an_old_unprintable_label_escaped(kenv, tmp_path) -> None:
    """A token file written before labels were checked: still one line per token."""
    storage = node_storage_dir(tmp_path)
    assert daemon("token", "create", "--label", "plain", "--storage-dir", str(storage), env=kenv)
    path = storage / "kachery-tokens.json"
    doc = json.loads(path.read_text())
    doc["tokens"][0]["label"] = FORGED
    path.write_text(json.dumps(doc))
    listed = daemon("token", "list", "--storage-dir", str(storage), env=kenv)
    assert listed.returncode == 0, listed
    lines = listed.stdout.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith("laptop\\n0123456789ab  2026-01-01 00:00  admin  root's laptop")


# -- 19. ports ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [("--port", "99999"), ("--port", "0"), ("--port", "-1"), ("--grpc-port", "70000")],
)
def test_a_port_out_of_range_is_a_usage_error_before_anything_is_written(
    kenv, tmp_path, option: str, value: str
) -> None:
    storage = tmp_path / "new-storage"
    started = daemon("start", "--storage-dir", str(storage), option, value, env=kenv)
    assert started.returncode == 2, started
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and value in lines[0], lines
    assert "Traceback" not in started.stderr
    assert not storage.exists()  # nothing written, not even the directory


# -- 20. --auth-group the node's user is not in --------------------------------------


@pytest.fixture
def outsider() -> Iterator[Tuple[str, str, Path]]:
    """A real second user, a group it is not in, and a storage directory it owns."""
    tools = ["useradd", "groupadd", "setpriv", SYSTEM_PYTHON]
    if os.geteuid() != 0 or not all(map(shutil.which, tools)):
        pytest.skip(f"needs root and {', '.join(tools)}")
    tag = os.getpid() % 100000
    user, group = f"ktu{tag}", f"ktg{tag}"
    made: List[List[str]] = []
    base = Path(tempfile.mkdtemp(prefix="kachery-outsider-"))
    try:
        for cmd, undo in (
            (["groupadd", group], ["groupdel", group]),
            (["useradd", "--no-create-home", user], ["userdel", user]),
        ):
            if subprocess.run(cmd, capture_output=True).returncode:
                pytest.skip(f"{cmd[0]} failed")
            made.append(undo)
        os.chmod(base, 0o755)
        storage = base / "storage"
        storage.mkdir()
        info = pwd.getpwnam(user)
        os.chown(storage, info.pw_uid, info.pw_gid)
        yield user, group, storage
    finally:
        for undo in reversed(made):
            subprocess.run(undo, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


SYSTEM_PYTHON = f"/usr/bin/python3.{sys.version_info[1]}"
"""An interpreter another user may run (this venv's may live under root's home, 0700)."""
RUN_DAEMON = (
    "import sys; from kachery_daemon.cli import main; sys.argv[0] = 'kachery-daemon'; main()"
)


def _daemon_as(user: str, *groups: str) -> List[str]:
    """`kachery-daemon`, this checkout's code and packages, run as `user` (and `groups`)."""
    info = pwd.getpwnam(user)
    extra = ",".join(str(grp.getgrnam(g).gr_gid) for g in groups)
    supplementary = [f"--groups={extra}"] if groups else ["--clear-groups"]
    return [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={info.pw_uid}",
        f"--regid={info.pw_gid}",
        *supplementary,
        "--",
        SYSTEM_PYTHON,
        "-c",
        RUN_DAEMON,
    ]


def _env(storage: Path) -> Dict[str, str]:
    import sysconfig

    import kachery_daemon

    code = Path(kachery_daemon.__file__).resolve().parents[1]
    packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(code), *sorted(packages)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(storage),
        "KACHERY_STORAGE_DIR": str(storage),
        "KACHERY_CONFIG": str(storage / "no-config.toml"),
        "KACHERY_SYSTEM_CONFIG": str(storage / "no-system-config.toml"),
    }


def test_an_auth_group_the_user_is_not_in_is_named_with_the_file(outsider) -> None:
    user, group, storage = outsider
    args = ["start", "--port", str(free_port()), "--auth-group", group]
    refused = subprocess.run(
        [*_daemon_as(user), *args],
        capture_output=True,
        text=True,
        env=_env(storage),
        timeout=60,
    )
    assert refused.returncode == 1, refused
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert repr(group) in lines[0] and str(storage / "client-auth") in lines[0], lines
    assert f"user {user} is not a member" in lines[0] and "usermod -aG" in lines[0], lines
    assert os.listdir(storage) == []  # refused before anything was written

    # In the group (as after `usermod -aG` and a new login), the same start works.
    port = free_port()
    proc = SafePopen(
        [*_daemon_as(user, group), "start", "--port", str(port), "--auth-group", group],
        env=_env(storage),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        die_with_parent=True,
    )
    try:
        auth = storage / "client-auth"
        deadline = time.monotonic() + 30
        while not auth.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert auth.exists(), proc.poll()
        assert auth.stat().st_gid == grp.getgrnam(group).gr_gid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
