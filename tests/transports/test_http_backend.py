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

from kachery_core.store.layout import StorageLayout


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
    from kachery_core.backend.base import SubfeedWatch

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
    started = make_node(
        "--auth-rotate-seconds", "0.3" if rotate else "300", "--allow-short-rotation"
    )
    import kachery_client as kc

    client = kc.Client(daemon_port=started.port, storage_dir=str(started.storage_dir))
    assert client.selection.name == "http"
    for i in range(6):
        client.set(f"k{i}", i)
        time.sleep(0.35)
        assert client.get(f"k{i}") == i


def test_stores_report_progress(node, kenv, tmp_path: Path) -> None:
    """Each way of storing reports the bytes done: the node reading the path, an upload of
    the file's bytes, a piped stream, a link."""
    from kachery_core.settings.config import resolve_config
    from kachery_daemon.tokens import TokenStore
    from kachery_transports.http import HttpDaemonTransport
    from kachery_transports.remote import RemoteDaemonTransport

    src = write_random_file(tmp_path / "data.bin", 3_000_000, seed=5)
    size = src.stat().st_size
    transport = HttpDaemonTransport.from_config(resolve_config())

    def stored_with_progress(store, *args) -> list:
        seen: list = []
        stored = store(*args, progress=seen.append)
        assert stored.sha1 == sha1_file(src)
        return seen

    assert stored_with_progress(transport.store_file, str(src)) == [size]  # /storeFile
    assert stored_with_progress(transport.link_file, str(src)) == [size]  # /linkFile
    _, token = TokenStore(node.storage_dir).create("progress")
    unshared = {"storage_dir": str(tmp_path / "cache"), "auth_token": token}
    remote = RemoteDaemonTransport.from_config(resolve_config(unshared))
    uploaded = stored_with_progress(remote.store_file, str(src))  # /store, the file's bytes
    remote.close()
    assert uploaded[-1] == size and uploaded == sorted(uploaded) and len(uploaded) > 1
    with open(src, "rb") as stream:
        piped = stored_with_progress(transport.store_stream, stream)  # /store, a stream
    assert piped[-1] == size and piped == sorted(piped)
    transport.close()


# -- the rules every network backend shares (kachery_transports.node_session) ----------


def _session(tmp_path: Path, **settings: str):
    from kachery_core.settings.config import resolve_config
    from kachery_transports.node_session import NodeSession

    config = resolve_config(settings, env={"KACHERY_CONFIG": str(tmp_path / "none.toml")})
    return NodeSession(config, "http://127.0.0.1:9", lambda: tmp_path / "client-auth")


def test_credential_is_the_token_else_the_code_read_fresh(tmp_path: Path) -> None:
    from kachery_core.errors import TransportError

    assert _session(tmp_path, auth_token="t" * 24).credential().rotates is False
    session = _session(tmp_path)
    with pytest.raises(TransportError, match="no client-auth file at"):
        session.credential()
    auth = tmp_path / "client-auth"
    auth.write_text("")
    with pytest.raises(TransportError, match="is empty"):
        session.credential()
    auth.write_text("code-1\n")
    assert session.credential().value == "code-1" and session.credential().rotates
    auth.write_text("code-2\n")
    assert session.credential().value == "code-2"  # never cached: the code rotates
    auth.unlink()
    auth.mkdir()
    with pytest.raises(TransportError, match="cannot read .*client-auth.* group"):
        session.credential()


def test_a_refused_code_is_retried_once_a_token_never(tmp_path: Path) -> None:
    from kachery_transports.node_session import AccessRefused

    (tmp_path / "client-auth").write_text("rotated-away")

    def refused_first(session, replayable: bool = True) -> list:
        sent: list = []

        def request(credential: str) -> str:
            sent.append(credential)
            if len(sent) == 1:
                raise session.refused("wrong code")
            return "answer"

        try:
            session.with_credential(request, replayable)
        except AccessRefused as exc:
            assert "refused access: wrong code" in str(exc)
        return sent

    code_session = _session(tmp_path)
    assert refused_first(code_session) == ["rotated-away", "rotated-away"]
    assert refused_first(code_session, replayable=False) == ["rotated-away"]
    assert refused_first(_session(tmp_path, auth_token="t" * 24)) == ["t" * 24]


def test_the_error_type_decides_the_exception(tmp_path: Path) -> None:
    """The node's error type wins over the protocol's status; none: the status decides."""
    from kachery_core.errors import (
        IntegrityError,
        InvalidInputError,
        NotFoundError,
        StaleLinkError,
    )
    from kachery_transports.node_session import AccessRefused

    session = _session(tmp_path, auth_token="t" * 24)

    def by_status() -> InvalidInputError:
        return InvalidInputError("by status")

    integrity = session.node_error("integrity", "chunk\ndamaged", by_status)
    assert type(integrity) is IntegrityError and str(integrity) == "chunk damaged"
    assert type(session.node_error("staleLink", "changed", by_status)) is StaleLinkError
    missing = session.node_error("notFound", "gone", by_status, subject="sha1://abc")
    assert type(missing) is NotFoundError
    assert str(missing) == "sha1://abc not found by the node at http://127.0.0.1:9: gone"
    refused = session.node_error("refused", "revoked", by_status)
    assert isinstance(refused, AccessRefused) and "sent the access token" in str(refused)
    for old_or_generic in (None, "", "error", "someFutureType"):
        assert str(session.node_error(old_or_generic, "x", by_status)) == "by status"
