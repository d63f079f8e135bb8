"""The same failure raises the same exception whichever backend carries it.

The node names the kind of every failure on the wire (an error frame's `errorType`, the
`KACHERY-ERROR-TYPE` header, the `kachery-error-type` gRPC trailer) and every network
backend maps it through the one table in `kachery_core.protocol.wire`, so a script can catch
`IntegrityError` or `NotFoundError` without knowing which backend is active.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import pytest
from conftest import free_port

import kachery_client as kc
from kachery_core.errors import IntegrityError, InvalidInputError, NotFoundError
from kachery_core.store.local import LocalStorage

HELLO = b"Hello, world!"
WORLD_SHA1 = hashlib.sha1(b"world").hexdigest()
MISSING_SHA1 = hashlib.sha1(b"never stored anywhere").hexdigest()


@dataclass
class OneNode:
    storage: LocalStorage
    """The node's own storage directory."""
    clients: Dict[str, kc.Client]
    """A client per backend, each reaching that node (local: its directory)."""


@pytest.fixture
def one_node(make_node, cli, tmp_path: Path) -> Iterator[OneNode]:
    """One client per built-in node-capable backend, all reaching the same node."""
    grpc_port = free_port()
    node = make_node("--grpc-port", str(grpc_port), "--auth-rotate-seconds", "300")
    made = cli(
        "token",
        "create",
        "--label",
        "t",
        "--storage-dir",
        str(node.storage_dir),
        program="kachery-daemon",
    )
    assert made.returncode == 0, made
    node_dir = str(node.storage_dir)
    clients = {
        "local": kc.Client("local", storage_dir=node_dir),
        "http": kc.Client("http", daemon_port=node.port, storage_dir=node_dir),
        "remote": kc.Client(
            "remote",
            daemon_port=node.port,
            storage_dir=str(tmp_path / "remote-cache"),
            auth_token=made.stdout.strip(),
        ),
        "grpc": kc.Client(
            "grpc",
            grpc_port=grpc_port,
            storage_dir=str(tmp_path / "grpc-cache"),
            auth_code_file=str(node.storage_dir / "client-auth"),
        ),
    }
    try:
        yield OneNode(LocalStorage(node.storage_dir), clients)
    finally:
        for client in clients.values():
            client.close()


def _damage(path: Path, offset: int) -> None:
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("backend", ["local", "http", "remote", "grpc"])
def test_a_chunk_cut_from_a_damaged_whole_is_an_integrity_error(
    one_node: OneNode, backend: str
) -> None:
    node_storage = one_node.storage
    stored = node_storage.store_bytes(HELLO)
    _damage(node_storage.layout.object_path(stored.sha1), 8)  # inside "world" (bytes 7-12)
    uri = f"sha1://{WORLD_SHA1}/world.txt?chunkOf={stored.sha1}~7~12"

    with pytest.raises(IntegrityError) as caught:
        one_node.clients[backend].load_bytes(uri)
    assert "\n" not in str(caught.value)
    assert not node_storage.has(WORLD_SHA1)  # nothing unverified was kept


@pytest.mark.parametrize("backend", ["local", "http", "remote", "grpc"])
def test_a_missing_object_is_not_found(one_node: OneNode, backend: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        one_node.clients[backend].load_file(f"sha1://{MISSING_SHA1}/gone.bin")
    assert MISSING_SHA1 in str(caught.value)


NOT_JSON = {
    "nan": (float("nan"), "nan"),
    "inf": (float("-inf"), "-inf"),
    "int-key": ({1: "one"}, "{1: 'one'}"),
    "none-key": ({"a": {None: 2}}, "{'a': {None: 2}}"),
    "bytes": (b"raw", "b'raw'"),
    "set": ([{1, 2}], "[{1, 2}]"),
}


@pytest.mark.parametrize("bad", sorted(NOT_JSON))
@pytest.mark.parametrize("backend", ["http", "remote", "grpc"])
def test_a_key_or_value_that_is_not_json_is_invalid_input_naming_it(
    one_node: OneNode, backend: str, bad: str
) -> None:
    """The same `InvalidInputError` on every backend that has mutables and feeds (local has
    neither), naming the bad value, before anything is sent: never another library's
    exception, and never a key silently turned into another (`{1: ...}` into `{"1": ...}`)."""
    value, shown = NOT_JSON[bad]
    client = one_node.clients[backend]
    attempts = {
        "mutable key": [
            lambda: client.get(value),
            lambda: client.set(value, 1),
            lambda: client.delete(value),
        ],
        "mutable value": [lambda: client.set("k", value)],
    }
    for what, calls in attempts.items():
        for call in calls:
            with pytest.raises(InvalidInputError) as caught:
                call()
            message = str(caught.value)
            assert message.startswith(f"{what} {shown} is not JSON: "), message
            assert "\n" not in message
    feed_id = client.transport.create_feed(None)
    with pytest.raises(InvalidInputError) as caught:
        client.transport.append_messages(feed_id, "a" * 40, [1, value])
    assert f"feed message {shown} is not JSON" in str(caught.value)
    assert client.transport.get_num_messages(feed_id, "a" * 40) == 0
    assert client.get("k") is None  # nothing was set
