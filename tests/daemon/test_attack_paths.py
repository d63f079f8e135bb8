"""Path requests (`/storeFile`, `/linkFile`) against a node run as a real second user.

The holder of the client-auth code may be anyone who can read `client-auth`: without
`--auth-group` that is every member of the node user's primary group, not only the node
user. These tests make real users and groups (`groupadd`/`useradd`, removed afterwards),
run the node as one of them through `setpriv`, and read `client-auth` as another, so the
attack is the real one: a group member asking the node for the node user's private file.
They also cover the objects the node serves and the files it never reads by path
(a symlinked object, a hard link to a link record).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests
from conftest import command, free_port
from node_fixtures import NodeProcess
from token_helpers import make_token

SECRET = b"the node user's private notes\n"
SHARED = b"notes for the whole group\n"
WORLD = b"anyone may read this\n"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(p) for p in ("useradd", "groupadd", "setpriv")),
    reason="needs root, useradd, groupadd and setpriv",
)


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"{argv[0]} failed: {done.stderr.strip()}")


@dataclass
class Lab:
    """A node user `owner` whose primary group `group` also has `member`, and their files."""

    base: Path
    env: Dict[str, str]
    owner: str
    member: str
    group: str
    nodes: List[NodeProcess] = field(default_factory=list)

    def uid(self, user: str) -> int:
        return pwd.getpwnam(user).pw_uid

    def gid(self, group: str) -> int:
        return grp.getgrnam(group).gr_gid

    def file(self, name: str, data: bytes, mode: int, owner: str, group: str) -> Path:
        path = self.base / name
        path.write_bytes(data)
        os.chown(path, self.uid(owner), self.gid(group))
        os.chmod(path, mode)
        return path

    def as_user(self, user: str, gid: int) -> List[str]:
        return [
            shutil.which("setpriv") or "setpriv",
            f"--reuid={self.uid(user)}",
            f"--regid={gid}",
            "--init-groups",
            "--",
        ]

    def start(self, user: str, gid: int, *args: str) -> NodeProcess:
        storage = self.base / f"storage-{len(self.nodes)}"
        storage.mkdir(mode=0o750)
        os.chown(storage, self.uid(user), gid)
        port = str(free_port())
        env = dict(self.env, KACHERY_STORAGE_DIR=str(storage), KACHERY_DAEMON_PORT=port)
        node = NodeProcess(storage, env, ["--auth-rotate-seconds", "300", *args])
        node.prefix = self.as_user(user, gid)
        self.nodes.append(node)  # first: a node that fails to answer is still stopped
        node.start()
        return node

    def code_read_by(self, user: str, node: NodeProcess) -> str:
        """The client-auth code as `user` reads it: proof that `user` holds it."""
        gid = pwd.getpwnam(user).pw_gid
        read = subprocess.run(
            [*self.as_user(user, gid), "cat", str(node.storage_dir / "client-auth")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert read.returncode == 0, read.stderr
        return read.stdout.strip()


@pytest.fixture
def lab(kenv: Dict[str, str]) -> Iterator[Lab]:
    tag = f"{os.getpid() % 100000}"
    group, owner, member = f"kpg{tag}", f"kpo{tag}", f"kpm{tag}"
    base = Path(tempfile.mkdtemp(prefix="kachery-paths-", dir="/tmp"))
    made: List[List[str]] = []
    try:
        os.chmod(base, 0o755)  # the users must reach the node's program and files
        _run("groupadd", group)
        made.append(["groupdel", group])
        _run("useradd", "--no-create-home", "--gid", group, owner)
        made.append(["userdel", owner])
        _run("useradd", "--no-create-home", "--groups", group, member)
        made.append(["userdel", member])
        env = dict(
            kenv,
            HOME=str(base),
            KACHERY_CONFIG=str(base / "config.toml"),
            KACHERY_SYSTEM_CONFIG=str(base / "system.toml"),
            XDG_CACHE_HOME=str(base / "cache"),
        )
        lab = Lab(base, env, owner, member, group)
        _skip_unless_runnable_by(lab, owner)
        try:
            yield lab
        finally:
            for node in lab.nodes:
                node.stop()
    finally:
        for argv in reversed(made):
            subprocess.run(argv, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _skip_unless_runnable_by(lab: Lab, user: str) -> None:
    """Skip unless `user` can run the node's program. A pyenv Python under /root finds its
    libpython through a directory only root may enter: 3.11 then falls back on the
    system's libpython3.11, but no system has a libpython3.8 (the 3.11 run covers these)."""
    check = subprocess.run(
        [*lab.as_user(user, lab.gid(lab.group)), command("kachery-daemon"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check.returncode:
        last = (check.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"user {user} cannot run kachery-daemon under this Python: {last}")


def store_path(node: NodeProcess, code: str, path: Path) -> requests.Response:
    return requests.post(
        node.url + "/storeFile",
        json={"localFilePath": str(path)},
        headers={"KACHERY-CLIENT-AUTH-CODE": code},
        timeout=60,
    )


def download(node: NodeProcess, headers: Dict[str, str], data: bytes) -> requests.Response:
    sha1 = hashlib.sha1(data).hexdigest()
    return requests.post(
        node.url + "/downloadFileData",
        json={"fileKey": {"sha1": sha1}},
        headers=headers,
        timeout=60,
    )


def refusal(response: requests.Response, path: Path) -> str:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    return response.text.replace(str(path), "<path>")


# -- item 3: the holder of the code is not always the node user -------------------------


@needs_root
def test_a_member_of_the_node_users_group_cannot_read_its_private_files(lab: Lab) -> None:
    group = lab.gid(lab.group)
    node = lab.start(lab.owner, group)
    code = lab.code_read_by(lab.member, node)  # the member holds the code...
    assert code == node.auth_code()
    secret = lab.file("secret.txt", SECRET, 0o600, lab.owner, lab.group)
    missing = lab.base / "missing.txt"
    # ...but the node reads for it only what every holder of the code could read
    refused = refusal(store_path(node, code, secret), secret)
    assert refused == refusal(store_path(node, code, missing), missing)
    assert download(node, node.headers(), SECRET).status_code == 404
    shared = lab.file("shared.txt", SHARED, 0o640, lab.owner, lab.group)
    assert store_path(node, code, shared).status_code == 200
    assert download(node, node.headers(), SHARED).content == SHARED


@needs_root
def test_a_node_that_cannot_tell_who_holds_the_code_reads_no_path(lab: Lab) -> None:
    nameless = 40000 + os.getpid() % 20000  # a group id with no entry: no members to know
    while True:
        try:
            grp.getgrgid(nameless)
        except KeyError:
            break
        nameless += 1
    node = lab.start(lab.owner, nameless)
    world = lab.file("world.txt", WORLD, 0o644, lab.owner, lab.group)
    answer = store_path(node, node.auth_code(), world)
    assert answer.status_code == 400 and "--path-identity" in answer.text, answer.text
    assert len(answer.text.strip().splitlines()) == 1
    assert download(node, node.headers(), WORLD).status_code == 404


@needs_root
def test_the_admin_says_which_identity_to_trust(lab: Lab) -> None:
    group = lab.gid(lab.group)
    secret = lab.file("secret.txt", SECRET, 0o600, lab.owner, lab.group)
    world = lab.file("world.txt", WORLD, 0o644, lab.owner, lab.group)
    trusting = lab.start(lab.owner, group, "--path-identity", "node-user")
    assert store_path(trusting, trusting.auth_code(), secret).status_code == 200
    closed = lab.start(lab.owner, group, "--path-identity", "none")
    assert store_path(closed, closed.auth_code(), world).status_code == 400
    # a user alone in its primary group is told apart without being asked: it is the holder
    solo = f"kps{os.getpid() % 100000}"
    _run("useradd", "--no-create-home", "--user-group", solo)
    try:
        own = lab.file("own.txt", b"solo's file\n", 0o600, solo, solo)
        alone = lab.start(solo, pwd.getpwnam(solo).pw_gid)
        assert store_path(alone, alone.auth_code(), own).status_code == 200
        alone.stop()
    finally:
        subprocess.run(["userdel", solo], capture_output=True)


# -- items 10 and 11: what the node serves and what it never reads -----------------------


def test_an_object_that_is_a_symlink_is_not_served(node: Any) -> None:
    key_path = node.storage_dir / "kachery-node-key.pem"
    key = key_path.read_bytes()
    sha1 = hashlib.sha1(key).hexdigest()
    planted = node.storage_dir / "sha1" / sha1[0:2] / sha1[2:4] / sha1[4:6] / sha1
    planted.parent.mkdir(parents=True)
    planted.symlink_to(key_path)
    reader = {"KACHERY-CLIENT-AUTH-CODE": make_token(node, "reader", "read")}
    single = download(node, reader, key)
    assert single.status_code == 404 and key not in single.content, single.status_code
    batch = requests.post(
        node.url + "/downloadFiles", json={"files": [{"sha1": sha1}]}, headers=reader, timeout=60
    )
    assert batch.status_code == 200 and key not in batch.content
    assert b"notFound" in batch.content
    # a symlinked directory on the way to an object is not followed either
    elsewhere = node.storage_dir.parent / "elsewhere"
    elsewhere.mkdir()
    os.link(key_path, elsewhere / sha1)
    planted.unlink()
    planted.parent.rmdir()
    planted.parent.symlink_to(elsewhere)
    again = download(node, reader, key)
    assert again.status_code == 404 and key not in again.content


def test_a_hard_link_to_a_link_record_is_never_read(node: Any, tmp_path: Path) -> None:
    linked = tmp_path / "linked.txt"
    linked.write_bytes(b"a linked file\n")
    st = linked.stat()
    answer = requests.post(
        node.url + "/linkFile",
        json={"localFilePath": str(linked), "size": st.st_size, "mtime": st.st_mtime},
        headers=node.headers(),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    records = list((node.storage_dir / "sha1").rglob("*.link"))
    assert len(records) == 1
    hard = tmp_path / "record-copy.json"
    os.link(records[0], hard)
    missing = tmp_path / "missing.json"
    code = node.auth_code()
    assert refusal(store_path(node, code, hard), hard) == refusal(
        store_path(node, code, missing), missing
    )
