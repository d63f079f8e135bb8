"""One machine, one node, several users: a lab member with a token beside a node whose
storage directory (0750, not theirs) they cannot read.

Real processes and real uids: the node runs as root with its own storage directory; the
client runs as a fresh user (tests/other_user.py) with only `daemon_host = "localhost"`
and a token file, as docs/lab-setup.md tells a lab member to set up.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest
from node_fixtures import make_token

from kachery_core.store.layout import StorageLayout


@pytest.fixture
def lab_node(make_node) -> Iterator:
    """A node on a storage directory outside the pytest temp tree (so that only its own
    mode, 0750, keeps other users out), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="kachery-lab-"))
    os.chmod(base, 0o755)
    try:
        yield make_node(storage_dir=base / "storage")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _rows(text: str) -> Dict[str, str]:
    """`kachery-client info`'s table: "key<spaces>value" per line."""
    rows = {}
    for line in text.splitlines():
        key, _, value = line.partition("  ")
        rows[key.strip()] = value.strip()
    return rows


def _member(other_user, node) -> Tuple[Dict[str, str], Path]:
    """The lab member's environment: localhost, the node's port, a token file of theirs."""
    token_file = other_user.write_private("kachery-token", make_token(node, other_user.name) + "\n")
    config = other_user.home / ".config" / "kachery" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'daemon_host = "localhost"\ndaemon_port = {node.port}\nauth_token_file = "{token_file}"\n'
    )
    for path in (config.parent.parent, config.parent, config):
        os.chown(path, other_user.uid, other_user.gid)
    return other_user.env(), token_file


def test_a_member_with_a_token_uses_the_node_they_cannot_read(other_user, lab_node) -> None:
    node = lab_node
    assert stat.S_IMODE(node.storage_dir.stat().st_mode) == 0o750
    assert node.storage_dir.stat().st_uid != other_user.uid
    env, _ = _member(other_user, node)
    data = other_user.write_private("data.txt", "measured by a lab member\n", 0o644)

    info = other_user.client("info", env=env)
    assert info.returncode == 0, info
    rows = _rows(info.stdout)
    assert rows["backend"] == "remote", info.stdout
    reason = rows["chosen because"]
    assert (
        f"storage directory {node.storage_dir} is not readable by user {other_user.name}" in reason
    )
    assert "over the connection" in reason
    cache = other_user.home / ".cache" / "kachery" / "storage"
    assert rows["storage dir"] == str(cache)  # the member's own cache

    stored = other_user.client("store-file", str(data), env=env)
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    assert uri.startswith("sha1://")
    # the bytes went over the socket into the node's own storage
    sha1 = uri[len("sha1://") :].split("/")[0]
    assert StorageLayout(node.storage_dir).object_path(sha1).read_bytes() == data.read_bytes()

    loaded = other_user.client("load-file", uri, env=env)
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    assert str(path).startswith(str(cache) + os.sep), path
    assert path.read_bytes() == data.read_bytes()
    assert path.stat().st_uid == other_user.uid
    cat = other_user.client("cat-file", uri, env=env)
    assert cat.returncode == 0 and cat.stdout_bytes == data.read_bytes(), cat


def test_forcing_http_on_an_unreadable_node_names_the_permission(other_user, lab_node) -> None:
    node = lab_node
    env, _ = _member(other_user, node)
    result = other_user.client("--backend", "http", "info", env=env)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"storage directory {node.storage_dir} (reported by the node)" in lines[0]
    assert f"is not readable by user {other_user.name}" in lines[0]
    assert "backend remote" in lines[0]
    assert "no kachery-node-id file" not in lines[0]


def test_a_storage_dir_of_another_node_is_named_as_such(cli, kenv, make_node, tmp_path) -> None:
    """The real mismatches, each with its own cause: another node's directory, and a
    directory no node owns."""
    node = make_node()
    other = make_node()
    env = dict(kenv, KACHERY_DAEMON_PORT=str(node.port))
    theirs = cli("info", env=dict(env, KACHERY_STORAGE_DIR=str(other.storage_dir)))
    assert theirs.returncode == 1, theirs
    other_id = (other.storage_dir / "kachery-node-id").read_text().strip()
    assert f"storage directory {other.storage_dir} (KACHERY_STORAGE_DIR)" in theirs.stderr
    assert f"is the storage directory of another node ({other_id})" in theirs.stderr
    plain = tmp_path / "just-a-directory"
    plain.mkdir()
    nobody = cli("info", env=dict(env, KACHERY_STORAGE_DIR=str(plain)))
    assert nobody.returncode == 1, nobody
    assert f"storage directory {plain} (KACHERY_STORAGE_DIR)" in nobody.stderr
    assert "is no node's storage directory (it has no kachery-node-id file)" in nobody.stderr
    assert "not readable" not in theirs.stderr + nobody.stderr


def test_a_member_without_a_token_is_told_to_get_one(other_user, lab_node) -> None:
    node = lab_node
    env = other_user.env(KACHERY_DAEMON_HOST="localhost", KACHERY_DAEMON_PORT=str(node.port))
    data = other_user.write_private("data.txt", "no token yet\n", 0o644)
    result = other_user.client("store-file", str(data), env=env)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "needs an access token" in lines[0] and "kachery-daemon token create" in lines[0]
