"""The `grpc` backend against a real node started with `--grpc-port`, on 127.0.0.1 only.

The client's storage dir (its cache) is not the node's, so every byte crosses the socket:
loads stream into the client cache, stores stream to the node.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest
from conftest import command, free_port, sha1_file, write_random_file
from node_fixtures import NodeProcess

from kachery_client.testing import ContractBackend, TransportContract
from kachery_core.backend.base import SubfeedWatch
from kachery_core.errors import InvalidInputError, NotFoundError, TransportError
from kachery_core.settings.config import resolve_config
from kachery_core.store.layout import StorageLayout
from kachery_core.store.local import LocalStorage
from kachery_transports.grpc import GrpcDaemonTransport


@pytest.fixture
def grpc_node(make_node) -> NodeProcess:
    port = free_port()
    node = make_node("--grpc-port", str(port), "--auth-rotate-seconds", "300")
    node.grpc_port = port  # type: ignore[attr-defined]
    return node


@pytest.fixture
def genv(kenv: Dict[str, str], grpc_node: NodeProcess, tmp_path: Path) -> Dict[str, str]:
    """The client's environment: the grpc backend, its own cache, the node's auth file."""
    return dict(
        kenv,
        KACHERY_TRANSPORT="grpc",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_GRPC_PORT=str(grpc_node.grpc_port),  # type: ignore[attr-defined]
        KACHERY_STORAGE_DIR=str(tmp_path / "client-cache"),
        KACHERY_AUTH_CODE_FILE=str(grpc_node.storage_dir / "client-auth"),
    )


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


def _objects(root: Path) -> list:
    return [p for p in (root / "sha1").rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.slow
def test_cli_store_load_and_ranges_of_a_large_file(
    grpc_node: NodeProcess, cli, genv: Dict[str, str], tmp_path: Path
) -> None:
    src = write_random_file(tmp_path / "data.bin", 25_000_000, seed=7)
    sha1 = sha1_file(src)
    stored = cli("store-file", str(src), env=genv)
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    assert uri.startswith(f"sha1://{sha1}/data.bin?manifest=")
    assert sha1_file(StorageLayout(grpc_node.storage_dir).object_path(sha1)) == sha1
    cache = Path(genv["KACHERY_STORAGE_DIR"])
    assert _objects(cache) == []  # stored on the node only

    loaded = cli("load-file", uri, env=genv)
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    assert path == StorageLayout(cache).object_path(sha1) and sha1_file(path) == sha1
    manifest = uri.split("?manifest=")[1]
    assert StorageLayout(cache).object_path(manifest).exists()  # the cache has the manifest too

    fresh = dict(genv, KACHERY_STORAGE_DIR=str(tmp_path / "other-cache"))  # ranges from the node
    data = src.read_bytes()
    for start, end in [(0, 10), (19_999_990, 20_000_010), (24_999_000, 25_000_000)]:
        part = cli("cat-file", uri, "--start", str(start), "--end", str(end), env=fresh)
        assert part.returncode == 0 and part.stdout_bytes == data[start:end], part
    assert _objects(tmp_path / "other-cache") == []
    whole = cli("cat-file", uri, env=fresh)
    assert whole.returncode == 0 and hashlib.sha1(whole.stdout_bytes).hexdigest() == sha1
    outside = cli("cat-file", uri, "--start", "5", "--end", "25000001", env=fresh)
    assert outside.returncode == 1 and "5-25000001" in _one_error_line(outside.stderr)

    piped = cli("store-file", "-", input=b"through a pipe", env=genv)
    assert piped.stdout.strip() == "sha1://" + hashlib.sha1(b"through a pipe").hexdigest()
    small = tmp_path / "small.txt"
    small.write_text("linked by the node")
    linked = cli("link-file", str(small), env=genv)
    assert linked.returncode == 0, linked
    assert cli("cat-file", linked.stdout.strip(), env=fresh).stdout == "linked by the node"

    info = cli("info", env=genv)
    assert "backend           grpc" in info.stdout
    assert f"grpc://127.0.0.1:{grpc_node.grpc_port}" in info.stdout  # type: ignore[attr-defined]


def test_python_api_mutables_and_feeds(grpc_node: NodeProcess, kenv, tmp_path: Path) -> None:
    import kachery_client as kc

    client = kc.Client(
        transport="grpc",
        daemon_host="127.0.0.1",
        grpc_port=grpc_node.grpc_port,  # type: ignore[attr-defined]
        storage_dir=str(tmp_path / "api-cache"),
        auth_code_file=str(grpc_node.storage_dir / "client-auth"),
    )
    uri = client.store_json({"x": [1, 2]})
    assert client.load_json(uri) == {"x": [1, 2]}
    client.set({"experiment": 7}, {"status": "done"})
    assert client.get({"experiment": 7}) == {"status": "done"}
    client.delete({"experiment": 7})
    assert client.get({"experiment": 7}) is None
    with pytest.raises(NotFoundError) as caught:
        client.load_file("sha1://" + "0" * 40)
    assert "0" * 40 in str(caught.value) and "grpc://" in str(caught.value)

    t = client.transport
    feed_id = t.create_feed("lab-feed")
    assert t.get_feed_id("lab-feed") == feed_id and t.get_feed_id("nope") is None
    subfeed = hashlib.sha1(b"main").hexdigest()
    t.append_messages(feed_id, subfeed, [{"a": 1}])
    assert t.get_num_messages(feed_id, subfeed) == 1
    with pytest.raises(InvalidInputError):
        t.get_num_messages("not-a-feed", subfeed)

    # A watch through gRPC wakes on an append through HTTP: one node, one set of feeds.
    http = kc.Client(
        transport="http", daemon_port=grpc_node.port, storage_dir=str(grpc_node.storage_dir)
    )
    threading.Timer(0.3, http.transport.append_messages, (feed_id, subfeed, [{"b": 2}])).start()
    started = time.monotonic()
    got = t.watch_for_new_messages({"w": SubfeedWatch(feed_id, subfeed, 1)}, 10_000)
    assert got == {"w": [{"b": 2}]} and time.monotonic() - started < 5
    t.delete_feed(feed_id)
    assert t.get_feed_id("lab-feed") is None
    http.close()
    client.close()


def test_wrong_auth_is_one_clean_line(
    grpc_node: NodeProcess, cli, genv: Dict[str, str], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-auth"
    wrong.write_text("0123456789abcdef")
    result = cli("store-file", "-", input=b"x", env=dict(genv, KACHERY_AUTH_CODE_FILE=str(wrong)))
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "refused access" in line and str(wrong) in line
    token = cli("load-file", "sha1://" + "1" * 40, env=dict(genv, KACHERY_AUTH_TOKEN="t" * 24))
    assert token.returncode == 1 and "refused access" in _one_error_line(token.stderr)
    missing = cli("load-file", "sha1://" + "1" * 40, env=dict(genv, KACHERY_AUTH_CODE_FILE=""))
    assert missing.returncode == 1  # <client cache>/client-auth does not exist
    assert "client-auth" in _one_error_line(missing.stderr)
    # probe needs no auth: info works whatever the code
    assert cli("info", env=dict(genv, KACHERY_AUTH_CODE_FILE=str(wrong))).returncode == 0


def test_node_not_running(cli, kenv: Dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = dict(
        kenv,
        KACHERY_TRANSPORT="grpc",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_GRPC_PORT=str(port),
    )
    started = time.monotonic()
    result = cli("load-file", "sha1://" + "2" * 40, env=env)
    assert result.returncode == 1 and time.monotonic() - started < 10
    line = _one_error_line(result.stderr)
    assert f"no kachery node answers at grpc://127.0.0.1:{port}" in line and "--grpc-port" in line


def test_daemon_info_shows_the_grpc_port(grpc_node: NodeProcess, node: NodeProcess, cli) -> None:
    def info(n: NodeProcess) -> str:
        args = ("info", "--storage-dir", str(n.storage_dir))
        return str(cli(*args, program="kachery-daemon").stdout)

    assert f"grpc         127.0.0.1:{grpc_node.grpc_port}" in info(grpc_node)  # type: ignore[attr-defined]
    assert "grpc " not in info(node)


def test_without_grpc_port_no_grpc_server(node: NodeProcess, cli, kenv) -> None:
    env = dict(kenv, KACHERY_TRANSPORT="grpc", KACHERY_DAEMON_HOST="127.0.0.1")
    env["KACHERY_GRPC_PORT"] = str(free_port())
    result = cli("info", env=env)
    assert result.returncode == 1 and "no kachery node answers" in result.stderr


def test_grpc_port_in_use_is_one_clean_line(kenv: Dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["start", "--host", "127.0.0.1", "--port", str(free_port())]
        args += ["--grpc-port", str(port), "--storage-dir", str(tmp_path / "s")]
        env = dict(kenv)
        proc = subprocess.run(
            [command("kachery-daemon"), *args], env=env, capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 1
    line = _one_error_line(proc.stderr)
    assert f"127.0.0.1:{port}" in line and "--grpc-port" in line


def test_expected_node_id(grpc_node: NodeProcess, cli, genv: Dict[str, str]) -> None:
    actual = (grpc_node.storage_dir / "kachery-node-id").read_text()
    other = "ab" * 32
    bad = cli("info", env=dict(genv, KACHERY_EXPECTED_NODE_ID=other))
    assert bad.returncode == 1
    line = _one_error_line(bad.stderr)
    assert other in line and actual in line and "KACHERY_EXPECTED_NODE_ID" in line
    good = cli("info", env=dict(genv, KACHERY_EXPECTED_NODE_ID=actual))
    assert good.returncode == 0 and actual in good.stdout


def test_cli_does_not_import_grpc(kenv) -> None:
    code = "import sys, kachery_cli.main, kachery_client; print('grpc' in sys.modules)"
    out = subprocess.run([command("python"), "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out


def _start_load(genv: Dict[str, str], uri: str, extra: Dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [command("kachery-client"), "load-file", uri],
        env=dict(genv, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_staging(cache: Path, proc: subprocess.Popen, at_least: int = 1) -> None:
    """Wait until the client is mid-load: its staging file holds some bytes."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        parts = list((cache / "tmp").glob("*.part")) if (cache / "tmp").exists() else []
        try:
            if parts and parts[0].stat().st_size >= at_least:
                return
        except FileNotFoundError:
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.002)
    raise AssertionError("the load never started")


@pytest.fixture
def big_object(grpc_node: NodeProcess, tmp_path: Path) -> Iterator[str]:
    """A 400 MB object in the node's storage (written there directly, which is quicker)."""
    src = write_random_file(tmp_path / "big.bin", 400_000_000, seed=11)
    stored = LocalStorage(grpc_node.storage_dir).store_file(src)
    src.unlink()
    yield str(stored.uri("big.bin"))


@pytest.mark.slow
def test_node_killed_mid_load_leaves_nothing(
    grpc_node: NodeProcess, genv: Dict[str, str], big_object: str
) -> None:
    cache = Path(genv["KACHERY_STORAGE_DIR"])
    proc = _start_load(genv, big_object, {})
    _wait_for_staging(cache, proc)
    os.kill(grpc_node.pid, signal.SIGKILL)
    grpc_node.proc = None
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "lost the node" in _one_error_line(err.decode())
    assert _objects(cache) == []  # no partial object
    assert list((cache / "tmp").glob("*.part")) == []  # and no staging file left behind


@pytest.mark.slow
def test_stalled_node_is_an_error_not_a_hang(
    grpc_node: NodeProcess, genv: Dict[str, str], big_object: str
) -> None:
    cache = Path(genv["KACHERY_STORAGE_DIR"])
    proc = _start_load(genv, big_object, {"KACHERY_READ_TIMEOUT": "1"})
    _wait_for_staging(cache, proc)
    os.kill(grpc_node.pid, signal.SIGSTOP)
    try:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1
        assert "sent nothing for 1 s" in _one_error_line(err.decode())
        assert _objects(cache) == []
        # A node stalled before the first call: the probe gives up after connect_timeout.
        started = time.monotonic()
        probe = subprocess.run(
            [command("kachery-client"), "info"],
            env=dict(genv, KACHERY_CONNECT_TIMEOUT="1"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 1 and time.monotonic() - started < 10
        assert "did not answer within 1 s" in _one_error_line(probe.stderr)
    finally:
        os.kill(grpc_node.pid, signal.SIGCONT)


def test_rotated_code_is_retried(make_node, kenv, tmp_path: Path) -> None:
    port = free_port()
    node = make_node(
        "--grpc-port", str(port), "--auth-rotate-seconds", "0.3", "--allow-short-rotation"
    )
    config = resolve_config(
        {
            "transport": "grpc",
            "daemon_host": "127.0.0.1",
            "grpc_port": port,
            "storage_dir": str(tmp_path / "rotating-cache"),
            "auth_code_file": str(node.storage_dir / "client-auth"),
        }
    )
    transport = GrpcDaemonTransport.from_config(config)
    for i in range(5):
        transport.mutable_set(f"k{i}", i)
        time.sleep(0.35)
        assert transport.mutable_get(f"k{i}") == (True, i)
    transport.close()


def test_the_client_leaves_the_process_allocator_alone(
    grpc_node: NodeProcess, tmp_path: Path
) -> None:
    """A client runs in someone else's process: only the node retunes malloc for gRPC."""
    from kachery_core.grpc_api import tuning

    config = resolve_config(
        {
            "daemon_host": "127.0.0.1",
            "grpc_port": grpc_node.grpc_port,  # type: ignore[attr-defined]
            "storage_dir": str(tmp_path / "c"),
            "auth_code_file": str(grpc_node.storage_dir / "client-auth"),
        }
    )
    transport = GrpcDaemonTransport.from_config(config)
    uri = transport.store_stream(io.BytesIO(b"some bytes")).uri()
    assert Path(transport.load_file(uri)).read_bytes() == b"some bytes"
    transport.close()
    assert tuning._done is False  # keep_freed_buffers() never ran in this process


def test_bad_requests_get_clean_status_codes(grpc_node: NodeProcess, genv) -> None:
    """Raw gRPC calls with bad input: each a status code and one line, the node unharmed."""
    import grpc

    from kachery_core.grpc_api import kachery_pb2 as pb
    from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc

    code = (grpc_node.storage_dir / "client-auth").read_text().strip()
    auth = (("kachery-client-auth-code", code),)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_node.grpc_port}") as channel:  # type: ignore[attr-defined]
        stub = pb_grpc.KacheryStub(channel)
        cases = [
            (lambda: stub.GetMutable(pb.MutableKey(key_json="{"), metadata=auth), "INVALID"),
            (lambda: stub.GetMutable(pb.MutableKey(key_json='"k"')), "UNAUTHENTICATED"),
            (
                lambda: stub.GetMutable(
                    pb.MutableKey(key_json='"k"'), metadata=(("kachery-client-auth-code", "x"),)
                ),
                "PERMISSION_DENIED",
            ),
            (
                lambda: list(stub.Load(pb.FileKey(sha1="../../etc/passwd"), metadata=auth)),
                "INVALID",
            ),
            (lambda: list(stub.Load(pb.FileKey(sha1="3" * 40), metadata=auth)), "NOT_FOUND"),
            (lambda: stub.Link(pb.LinkRequest(path="relative/path"), metadata=auth), "INVALID"),
            (lambda: stub.DeleteFeed(pb.FeedId(feed_id="zz"), metadata=auth), "INVALID"),
            (
                lambda: stub.WatchForNewMessages(pb.WatchRequest(wait_msec=-1), metadata=auth),
                "INVALID",
            ),
            (lambda: stub.Probe(pb.ProbeRequest(nonce="not hex")), "INVALID"),
        ]
        for call, expected in cases:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code().name.startswith(expected), caught.value
            assert "\n" not in caught.value.details()
        assert stub.Probe(pb.ProbeRequest()).node_id == grpc_node.probe()["nodeId"]


# -- the transport contract, like every built-in backend -----------------------------


@pytest.fixture(scope="module")
def shared_grpc_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("grpc-contract-node")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
    env.update(KACHERY_CONFIG=str(root / "config.toml"), KACHERY_DAEMON_PORT=str(free_port()))
    port = free_port()
    node = NodeProcess(root / "storage", env, ["--grpc-port", str(port)])
    node.grpc_port = port  # type: ignore[attr-defined]
    node.start()
    try:
        yield node
    finally:
        node.stop()


class TestGrpcContract(TransportContract):
    """Every byte crosses the socket: the client's cache is not the node's storage."""

    @pytest.fixture
    def backend(self, tmp_path: Path, shared_grpc_node: NodeProcess) -> Iterator[ContractBackend]:
        config = resolve_config(
            {
                "daemon_host": "127.0.0.1",
                "grpc_port": shared_grpc_node.grpc_port,  # type: ignore[attr-defined]
                "storage_dir": str(tmp_path / "cache"),
                "auth_code_file": str(shared_grpc_node.storage_dir / "client-auth"),
            },
            env={
                "KACHERY_CONFIG": str(tmp_path / "config.toml"),
                "KACHERY_SYSTEM_CONFIG": str(tmp_path / "system.toml"),
            },
        )
        transport = GrpcDaemonTransport.from_config(config)
        yield ContractBackend(transport)
        transport.close()


def test_transport_error_type(grpc_node: NodeProcess, tmp_path: Path) -> None:
    """A node that goes away between calls: TransportError, not a grpc exception."""
    config = resolve_config(
        {
            "daemon_host": "127.0.0.1",
            "grpc_port": grpc_node.grpc_port,  # type: ignore[attr-defined]
            "storage_dir": str(tmp_path / "c"),
            "auth_code_file": str(grpc_node.storage_dir / "client-auth"),
        }
    )
    transport = GrpcDaemonTransport.from_config(config)
    transport.mutable_set("a", 1)
    grpc_node.stop()
    with pytest.raises(TransportError):
        transport.mutable_get("a")
    transport.close()


def test_a_named_channel_is_never_silently_ignored(grpc_node: NodeProcess, cli, genv) -> None:
    missing = "sha1://" + "ab" * 20 + "/x.bin"
    for subcommand in ("load-file", "cat-file"):
        result = cli(subcommand, missing, "--channel", "lab", env=genv)
        assert result.returncode == 1
        line = _one_error_line(result.stderr)
        assert "does not support loading from channel 'lab'" in line and "--backend http" in line
    plain = cli("load-file", missing, env=genv)  # no channel named: the usual not-found error
    assert plain.returncode == 1 and "not found by the node" in plain.stderr
