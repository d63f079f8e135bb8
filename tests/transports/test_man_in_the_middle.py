"""A hostile proxy between the client and a real node: every altered answer is refused.

The proxy (`tests/mitm_proxy.py`, its own process) relays the node's signed probe
untouched, so the node ID check passes; it replaces the bytes of every read with a pickle
that would create a marker file when loaded, and the hash in every store answer with
another object's. The client must raise `IntegrityError` (exit 1, one line naming the URI
or both hashes and the address it talked to), run no pickle, print no URI and keep nothing.
"""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from conftest import free_port
from mitm_proxy import evil_pickle
from node_fixtures import NodeProcess, make_token
from proxies import proxy_launcher

from kachery_core.store.layout import StorageLayout

PROXY = str(Path(__file__).parent.parent / "mitm_proxy.py")


@pytest.fixture
def start_proxy() -> Iterator:
    """tests/mitm_proxy.py: start(mode, upstream_port, marker) -> the proxy's port."""
    with proxy_launcher(PROXY) as start:
        yield start


def _honest_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "honest.pkl"
    path.write_bytes(pickle.dumps({"results": list(range(100))}))
    return path


def _store_directly(cli, kenv: Dict[str, str], node: NodeProcess, path: Path) -> str:
    env = dict(kenv, KACHERY_DAEMON_PORT=str(node.port), KACHERY_STORAGE_DIR=str(node.storage_dir))
    stored = cli("store-file", str(path), env=env)
    assert stored.returncode == 0, stored
    return stored.stdout.strip()


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result
    assert lines[0].startswith("Error: "), result
    return lines[0]


def _node_id(node: NodeProcess) -> str:
    probe = node.probe()
    assert probe is not None
    return str(probe["nodeId"])


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _objects(root: Path) -> List[Path]:
    return [p for p in (root / "sha1").rglob("*") if p.is_file()] if root.exists() else []


def _assert_store_refused(cli, env: Dict[str, str], tmp_path: Path, proxy_port: int) -> None:
    mine = tmp_path / "myresults.txt"
    mine.write_text("my results\n")
    mine_sha1 = hashlib.sha1(mine.read_bytes()).hexdigest()
    for args, stdin in ((["store-file", str(mine)], None), (["store-file", "-"], b"my results\n")):
        stored = cli(*args, env=env, input=stdin)
        line = _error_line(stored)
        assert stored.stdout == "", stored  # no URI
        assert mine_sha1 in line and "answered" in line and str(proxy_port) in line


def test_remote_backend_through_a_tampering_proxy(
    make_node, cli, kenv: Dict[str, str], tmp_path: Path, start_proxy
) -> None:
    node = make_node()
    marker = tmp_path / "the-proxy-ran-code"
    uri = _store_directly(cli, kenv, node, _honest_pickle(tmp_path))
    proxy_port = start_proxy("http", node.port, marker)
    cache = tmp_path / "laptop-cache"
    env = dict(
        kenv,
        KACHERY_TRANSPORT="remote",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_DAEMON_PORT=str(proxy_port),
        KACHERY_STORAGE_DIR=str(cache),
        KACHERY_AUTH_TOKEN=make_token(node, "mitm"),
        KACHERY_EXPECTED_NODE_ID=_node_id(node),  # the relayed probe still proves it
    )
    assert cli("info", env=env).returncode == 0

    shown = cli("cat-file", uri, env=env)
    line = _error_line(shown)
    assert shown.stdout_bytes == b""  # a small object: checked before any byte is written
    assert uri.split("?")[0] in line and f"remote backend (http://127.0.0.1:{proxy_port})" in line
    assert f"hash to {_sha1(evil_pickle(str(marker)))}" in line  # what arrived

    loaded = cli("load-file", uri, env=env)
    assert "hash to" in _error_line(loaded) and loaded.stdout == ""
    assert _objects(cache) == []  # nothing kept in the cache

    code = (
        "import kachery_client as kc\n"
        f"try:\n    kc.load_pkl({uri!r})\n"
        "except kc.IntegrityError as exc:\n    print('refused:', exc)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert ran.stdout.startswith("refused:"), ran
    assert not marker.exists(), "the proxy's pickle ran"

    _assert_store_refused(cli, env, tmp_path, proxy_port)


def test_http_backend_stores_through_a_tampering_proxy(
    make_node, cli, kenv: Dict[str, str], tmp_path: Path, start_proxy
) -> None:
    node = make_node()
    proxy_port = start_proxy("http", node.port, tmp_path / "marker")
    env = dict(
        kenv,
        KACHERY_TRANSPORT="http",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_DAEMON_PORT=str(proxy_port),
        KACHERY_STORAGE_DIR=str(node.storage_dir),
        KACHERY_EXPECTED_NODE_ID=_node_id(node),
    )
    _assert_store_refused(cli, env, tmp_path, proxy_port)  # /storeFile, then /store
    linked = tmp_path / "linked.txt"
    linked.write_text("linked results\n")
    link = cli("link-file", str(linked), env=env)
    assert "answered" in _error_line(link) and link.stdout == ""


def test_grpc_backend_through_a_tampering_proxy(
    make_node, cli, kenv: Dict[str, str], tmp_path: Path, start_proxy
) -> None:
    grpc_port = free_port()
    node = make_node("--grpc-port", str(grpc_port))
    marker = tmp_path / "the-proxy-ran-code"
    uri = _store_directly(cli, kenv, node, _honest_pickle(tmp_path))
    proxy_port = start_proxy("grpc", grpc_port, marker)
    cache = tmp_path / "grpc-cache"
    env = dict(
        kenv,
        KACHERY_TRANSPORT="grpc",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_GRPC_PORT=str(proxy_port),
        KACHERY_STORAGE_DIR=str(cache),
        KACHERY_AUTH_CODE_FILE=str(node.storage_dir / "client-auth"),
        KACHERY_EXPECTED_NODE_ID=_node_id(node),
    )
    assert cli("info", env=env).returncode == 0, cli("info", env=env)

    shown = cli("cat-file", uri, env=env)
    line = _error_line(shown)
    assert shown.stdout_bytes == b"" and "hash to" in line
    assert f"grpc backend (grpc://127.0.0.1:{proxy_port})" in line

    loaded = cli("load-file", uri, env=env)
    line = _error_line(loaded)
    assert "hash to" in line and f"grpc://127.0.0.1:{proxy_port}" in line
    assert _objects(cache) == []
    assert not (cache / "tmp").exists() or list((cache / "tmp").iterdir()) == []

    code = (  # a process of its own: no gRPC state in the test process
        "import kachery_client as kc\n"
        f"try:\n    kc.load_pkl({uri!r})\n"
        "except kc.IntegrityError as exc:\n    print('refused:', exc)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert ran.stdout.startswith("refused:"), ran
    assert not marker.exists(), "the proxy's pickle ran"

    _assert_store_refused(cli, env, tmp_path, proxy_port)
    linked = tmp_path / "linked.txt"
    linked.write_text("linked results\n")
    link = cli("link-file", str(linked), env=env)
    assert "answered" in _error_line(link) and link.stdout == ""


def test_damaged_objects_are_refused(cli, kenv: Dict[str, str], tmp_path: Path) -> None:
    """An object damaged on disk: cat-file and load_bytes refuse it (embedded backend)."""
    source = tmp_path / "data.bin"
    source.write_bytes(b"precious data " * 1000)
    stored = cli("store-file", str(source))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    path = StorageLayout(Path(kenv["KACHERY_STORAGE_DIR"])).object_path(uri[7:47])
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"X")
    shown = cli("cat-file", uri)
    assert "hash to" in _error_line(shown) and shown.stdout_bytes == b""
    part = cli("cat-file", uri, "--start", "10", "--end", "20")
    assert "hash to" in _error_line(part) and part.stdout_bytes == b""
    code = (
        "import kachery_client as kc\n"
        f"try:\n    kc.load_bytes({uri!r})\n"
        "except kc.IntegrityError as exc:\n    print('refused:', exc)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], env=kenv, capture_output=True, text=True)
    assert ran.stdout.startswith("refused:"), ran
