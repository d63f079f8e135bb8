"""The `grpc` backend against a real node started with `--grpc-port`, on 127.0.0.1 only.

The client's storage dir (its cache) is not the node's, so every byte crosses the socket:
loads stream into the client cache, stores stream to the node. How it fails (a node
killed or stalled mid-load, a rotated code, bad requests) is in test_grpc_failures.py.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest
from conftest import command, free_port, sha1_file, write_random_file
from grpc_fixtures import objects_below, one_error_line
from node_fixtures import NodeProcess

from kachery_client.testing import ContractBackend, TransportContract
from kachery_core.backend.base import SubfeedWatch
from kachery_core.errors import InvalidInputError, NotFoundError, TransportError
from kachery_core.settings.config import resolve_config
from kachery_core.store.layout import StorageLayout
from kachery_transports.grpc import GrpcDaemonTransport


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
    assert objects_below(cache) == []  # stored on the node only

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
    assert objects_below(tmp_path / "other-cache") == []
    whole = cli("cat-file", uri, env=fresh)
    assert whole.returncode == 0 and hashlib.sha1(whole.stdout_bytes).hexdigest() == sha1
    outside = cli("cat-file", uri, "--start", "5", "--end", "25000001", env=fresh)
    assert outside.returncode == 1 and "5-25000001" in one_error_line(outside.stderr)

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
    line = one_error_line(result.stderr)
    assert "refused access" in line and str(wrong) in line
    token = cli("load-file", "sha1://" + "1" * 40, env=dict(genv, KACHERY_AUTH_TOKEN="t" * 24))
    assert token.returncode == 1 and "refused access" in one_error_line(token.stderr)
    missing = cli("load-file", "sha1://" + "1" * 40, env=dict(genv, KACHERY_AUTH_CODE_FILE=""))
    assert missing.returncode == 1  # <client cache>/client-auth does not exist
    assert "client-auth" in one_error_line(missing.stderr)
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
    line = one_error_line(result.stderr)
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
    line = one_error_line(proc.stderr)
    assert f"127.0.0.1:{port}" in line and "--grpc-port" in line


def test_expected_node_id(grpc_node: NodeProcess, cli, genv: Dict[str, str]) -> None:
    actual = (grpc_node.storage_dir / "kachery-node-id").read_text()
    other = "ab" * 32
    bad = cli("info", env=dict(genv, KACHERY_EXPECTED_NODE_ID=other))
    assert bad.returncode == 1
    line = one_error_line(bad.stderr)
    assert other in line and actual in line and "KACHERY_EXPECTED_NODE_ID" in line
    good = cli("info", env=dict(genv, KACHERY_EXPECTED_NODE_ID=actual))
    assert good.returncode == 0 and actual in good.stdout


def test_cli_does_not_import_grpc(kenv) -> None:
    code = "import sys, kachery_cli.main, kachery_client; print('grpc' in sys.modules)"
    out = subprocess.run([command("python"), "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out


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
        line = one_error_line(result.stderr)
        assert "does not support loading from channel 'lab'" in line and "--backend http" in line
    plain = cli("load-file", missing, env=genv)  # no channel named: the usual not-found error
    assert plain.returncode == 1 and "not found by the node" in plain.stderr
