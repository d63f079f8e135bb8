"""The `http` backend: the CLI and Python API through a real local node."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import command, sha1_file, write_random_file

from kachery_core.layout import StorageLayout


def test_selected_automatically_and_used(node, cli, kenv, tmp_path: Path) -> None:
    info = cli("info")
    assert "backend           http" in info.stdout
    assert f"a node answered the probe at localhost:{node.port}" in info.stdout
    node_id = (node.storage_dir / "kachery-node-id").read_text()
    assert node_id in info.stdout

    src = write_random_file(tmp_path / "data.bin", 25_000_000)
    stored = cli("store-file", str(src))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    sha1 = sha1_file(src)
    assert uri.startswith(f"sha1://{sha1}/data.bin?manifest=")
    object_path = StorageLayout(node.storage_dir).object_path(sha1)
    assert cli("load-file", uri).stdout.strip() == str(object_path)
    assert (
        cli("cat-file", uri, "--start", "100", "--end", "200").stdout_bytes
        == src.read_bytes()[100:200]
    )

    small = tmp_path / "small.txt"
    small.write_text("linked through the node")
    linked = cli("link-file", str(small))
    assert (
        linked.returncode == 0
        and cli("cat-file", linked.stdout.strip()).stdout == "linked through the node"
    )

    piped = cli("store-file", "-", input=b"from a pipe")
    assert piped.stdout.strip() == "sha1://" + hashlib.sha1(b"from a pipe").hexdigest()
    assert (
        StorageLayout(node.storage_dir)
        .object_path(hashlib.sha1(b"from a pipe").hexdigest())
        .exists()
    )


def test_python_api_mutables_and_feeds(node, kenv) -> None:
    import kachery_client as kc

    client = kc.default_client()
    assert client.selection.name == "http"
    kc.set({"experiment": 7}, {"status": "done"})
    assert kc.get({"experiment": 7}) == {"status": "done"}
    kc.delete({"experiment": 7})
    assert kc.get({"experiment": 7}) is None
    uri = kc.store_json({"x": 1})
    assert kc.load_json(uri) == {"x": 1}
    transport = client.transport
    feed_id = transport.create_feed("f")
    assert transport.get_feed_id("f") == feed_id
    subfeed = hashlib.sha1(b"main").hexdigest()
    transport.append_messages(feed_id, subfeed, [{"a": 1}])
    assert transport.get_num_messages(feed_id, subfeed) == 1
    from kachery_core.transport import SubfeedWatch

    got = transport.watch_for_new_messages({"w": SubfeedWatch(feed_id, subfeed, 0)}, 0)
    assert got == {"w": [{"a": 1}]}


def test_expected_node_id_mismatch(node, cli, kenv) -> None:
    other = "cd" * 32
    env = dict(kenv, KACHERY_EXPECTED_NODE_ID=other)
    result = cli("load-file", "sha1://" + "0" * 40, env=env)
    assert result.returncode == 1
    actual = (node.storage_dir / "kachery-node-id").read_text()
    assert (
        other in result.stderr
        and actual in result.stderr
        and "KACHERY_EXPECTED_NODE_ID" in result.stderr
    )
    ok = cli("info", env=dict(kenv, KACHERY_EXPECTED_NODE_ID=actual))
    assert ok.returncode == 0 and "backend           http" in ok.stdout


def test_storage_dir_of_another_node_is_refused(node, cli, kenv, tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-the-node"
    elsewhere.mkdir()
    result = cli("info", env=dict(kenv, KACHERY_STORAGE_DIR=str(elsewhere)))
    # The probe still finds the node, but the client's view of its storage is wrong.
    assert result.returncode == 1
    assert "kachery-node-id" in result.stderr and str(elsewhere) in result.stderr


def test_forced_http_without_node(cli, kenv) -> None:
    result = cli("--transport", "http", "load-file", "sha1://" + "0" * 40)
    assert result.returncode == 1
    assert "no kachery node answers" in result.stderr and "kachery-daemon start" in result.stderr


def test_auth_file_unreadable(node, cli, kenv) -> None:
    auth = node.storage_dir / "client-auth"
    code = auth.read_text()
    auth.unlink()
    auth.mkdir()  # unreadable as a file, even for root
    try:
        result = cli("store-file", "-", input=b"x")
        assert result.returncode == 1
        assert "client-auth" in result.stderr and "group" in result.stderr
    finally:
        auth.rmdir()
        auth.write_text(code)


def test_node_killed_mid_store(node, cli, kenv, tmp_path: Path) -> None:
    src = write_random_file(tmp_path / "big.bin", 500_000_000, seed=3)
    sha1 = sha1_file(src)
    proc = subprocess.Popen(
        [command("kachery-client"), "store-file", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=kenv,
    )
    assert proc.stdin is not None
    with open(src, "rb") as f:
        proc.stdin.write(f.read(50_000_000))  # the node is busy with this store now
        time.sleep(0.3)
        os.kill(node.pid, signal.SIGKILL)
        try:
            while block := f.read(4 << 20):
                proc.stdin.write(block)
        except BrokenPipeError:
            pass
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.wait(60)
    assert proc.returncode == 1, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "lost the node" in lines[0]
    assert not StorageLayout(node.storage_dir).object_path(sha1).exists()
    node.proc = None
    node.start()  # restarts cleanly on the same storage directory
    again = cli("store-file", str(src))
    assert again.returncode == 0, again
    assert sha1_file(StorageLayout(node.storage_dir).object_path(sha1)) == sha1
    leftovers = list((node.storage_dir / "tmp").glob("*.part"))
    assert leftovers == []  # the killed node's staging file was swept


@pytest.mark.parametrize("rotate", [False, True])
def test_rotation_between_requests_is_invisible(
    make_node, kenv, tmp_path: Path, rotate: bool
) -> None:
    started = make_node("--auth-rotate-seconds", "0.3" if rotate else "300")
    import kachery_client as kc

    client = kc.Client(daemon_port=started.port, storage_dir=str(started.storage_dir))
    assert client.selection.name == "http"
    for i in range(6):
        client.set(f"k{i}", i)
        time.sleep(0.35)
        assert client.get(f"k{i}") == i
