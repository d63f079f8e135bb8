"""The `grpc` backend when things go wrong: a node killed or stalled mid-load, a rotated
client-auth code, the process allocator left alone, bad requests answered with clean
status codes. Real nodes on 127.0.0.1 (the fixtures of grpc_fixtures.py).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest
from conftest import command, free_port, write_random_file
from grpc_fixtures import objects_below, one_error_line
from node_fixtures import NodeProcess

from kachery_core.settings.config import resolve_config
from kachery_core.store.local import LocalStorage
from kachery_transports.grpc import GrpcDaemonTransport


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
    assert "lost the node" in one_error_line(err.decode())
    assert objects_below(cache) == []  # no partial object
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
        assert "sent nothing for 1 s" in one_error_line(err.decode())
        assert objects_below(cache) == []
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
        assert "did not answer within 1 s" in one_error_line(probe.stderr)
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
