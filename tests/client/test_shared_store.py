"""A storage directory shared by a lab group without a node (`kachery-client init-shared`):
two real users (separate uids, umask 022) store, load, fetch and gc in it at once; every
file they leave has the group's permissions, and nothing either of them stored is lost."""

from __future__ import annotations

import grp
import json
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List

import pytest
from other_user import OtherUser, account

from kachery_core.store.index import CACHED, INDEX_FILE, PINNED
from kachery_core.store.local import LocalStorage

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(p) for p in ("useradd", "groupadd", "setpriv")),
    reason="needs root, useradd, groupadd and setpriv",
)

WORK = """
import json, os, sys
from pathlib import Path
os.umask(0o022)
import kachery_client as kc
from kachery_core.content.hashing import sha1_of_bytes
from kachery_core.store.local import LocalStorage
root, me = Path(sys.argv[1]), sys.argv[2]
client = kc.Client(backend="local", storage_dir=str(root), gc_grace_seconds=0)
fetcher = LocalStorage(root)
stored = []
for round in range(15):
    for i in range(10):
        data = f"{me} stored {round}-{i}".encode() + os.urandom(64)
        uri = client.store_bytes(data)
        assert client.load_bytes(uri) == data
        stored.append(uri)
    for i in range(10):
        data = f"{me} fetched {round}-{i}".encode() + os.urandom(64)
        fetcher.store_bytes(data, expected_sha1=sha1_of_bytes(data))
    client.gc(max_size=0)
print(json.dumps(stored))
"""


@pytest.fixture
def lab() -> Iterator[List[OtherUser]]:
    """A group and two members (each with their own primary group too)."""
    tag = secrets.token_hex(3)
    group = f"ksg{tag}"
    undo: List[List[str]] = []
    homes: List[Path] = []
    try:
        subprocess.run(["groupadd", group], check=True, capture_output=True)
        undo.append(["groupdel", group])
        users = []
        for n in range(2):
            name = f"ksu{tag}{n}"
            subprocess.run(
                ["useradd", "--no-create-home", "--user-group", "--groups", group, name],
                check=True,
                capture_output=True,
            )
            undo.insert(0, ["userdel", name])
            users.append(account(name))
            homes.append(users[-1].home)
        yield users
    finally:
        for argv in undo:
            subprocess.run(argv, capture_output=True)
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)


def test_two_users_store_load_and_gc_in_one_shared_store(lab, cli, kenv) -> None:
    group = [g.gr_name for g in grp.getgrall() if lab[0].name in g.gr_mem][0]
    base = Path(tempfile.mkdtemp(prefix="kachery-shared-"))
    os.chmod(base, 0o755)
    root = base / "store"
    try:
        made = cli("init-shared", str(root), "--group", group)
        assert made.returncode == 0, made
        assert f"shared by group {group}" in made.stdout
        procs = [
            subprocess.Popen(
                user.argv(user.python, "-c", WORK, str(root), user.name),
                env=user.env(),
                cwd=str(user.home),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for user in lab
        ]
        stored: List[str] = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()
            stored += json.loads(out)
        assert len(stored) == 300
        # Each user loads what the other stored; nothing pinned was collected.
        for user, theirs in ((lab[0], stored[150:]), (lab[1], stored[:150])):
            for uri in theirs[::15]:
                loaded = user.client("cat-file", uri, env=user.env(KACHERY_STORAGE_DIR=str(root)))
                assert loaded.returncode == 0, loaded
        storage = LocalStorage(root)
        for uri in stored:
            sha1 = uri[len("sha1://") :]
            assert storage.verify(sha1)
            row = storage.open_index().row(sha1)
            assert row is not None and row[0] == PINNED
        seen = lab[1].client("usage", "--json", env=lab[1].env(KACHERY_STORAGE_DIR=str(root)))
        assert seen.returncode == 0, seen
        figures = json.loads(seen.stdout)
        assert figures["pinned"]["count"] == 300
        assert figures[CACHED]["count"] == 0  # each round's gc evicted the fetched ones
        gid = grp.getgrnam(group).gr_gid
        for top, dirs, files in os.walk(root):
            for name in dirs:
                st = os.stat(Path(top) / name)
                assert st.st_gid == gid and st.st_mode & stat.S_ISGID, (top, name)
                assert st.st_mode & 0o070 == 0o070, (top, name, oct(st.st_mode))
            for name in files:
                st = os.stat(Path(top) / name)
                assert st.st_gid == gid, (top, name)
                assert st.st_mode & 0o040, (top, name, oct(st.st_mode))
        for name in (INDEX_FILE, "kachery-gc.lock"):
            assert os.stat(root / name).st_mode & 0o060 == 0o060, name
    finally:
        shutil.rmtree(base, ignore_errors=True)
