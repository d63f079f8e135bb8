"""The path policy against hostile requests on a real node: the node's private files, another
user's 0600 files and gRPC `Link` (split from test_hostile_peers.py, which shares its helpers)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest
from test_hostile_peers import one_line_4xx, post

# -- 5. path policy --------------------------------------------------------------------


def test_path_requests_never_read_the_nodes_private_files(node, tmp_path: Path) -> None:
    from kachery_daemon.tokens import TokenStore

    TokenStore(node.storage_dir).create("laptop")
    post(node, "/mutable/set", {"key": "k", "value": 1})
    missing = str(tmp_path / "no-such-file")

    def answer(path: str, route: str = "/storeFile") -> str:
        doc: Dict[str, Any] = {"localFilePath": path}
        if route == "/linkFile":
            doc.update(size=1, mtime=1.0)
        return one_line_4xx(post(node, route, doc)).replace(path, "<path>")

    expected = {route: answer(missing, route) for route in ("/storeFile", "/linkFile")}
    key = node.storage_dir / "kachery-node-key.pem"
    symlink = tmp_path / "innocent.pem"
    symlink.symlink_to(key)
    hardlink = tmp_path / "hard.pem"
    os.link(key, hardlink)
    os.chmod(key, 0o644)  # even readable by all, the node's own key is never read
    try:
        private = [
            key,
            node.storage_dir / "kachery-tokens.json",
            node.storage_dir / "kachery-mutables.db",
            node.storage_dir / "kachery-mutables.db-wal",
            node.storage_dir / "client-auth",
            node.storage_dir / "kachery-daemon.json",
            symlink,
            hardlink,
        ]
        for path in private:
            for route, text in expected.items():
                assert answer(str(path), route) == text, (path, route)
    finally:
        os.chmod(key, 0o600)
    assert "no such file" in expected["/storeFile"]
    readable = tmp_path / "mine.txt"
    readable.write_text("mine")
    assert post(node, "/storeFile", {"localFilePath": str(readable)}).json()["sha1"]


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd"), reason="needs root and useradd"
)
def test_another_users_private_file_is_refused_like_a_missing_one(node, tmp_path: Path) -> None:
    import pwd

    name = f"ktest{os.getpid() % 100000}"
    if subprocess.run(["useradd", "--no-create-home", name], capture_output=True).returncode:
        pytest.skip("useradd failed")
    try:
        uid = pwd.getpwnam(name).pw_uid
        os.chmod(tmp_path, 0o755)
        theirs = tmp_path / "theirs.txt"
        theirs.write_text("secret")
        os.chown(theirs, uid, -1)
        os.chmod(theirs, 0o600)
        missing = tmp_path / "missing.txt"
        a = one_line_4xx(post(node, "/storeFile", {"localFilePath": str(theirs)}))
        b = one_line_4xx(post(node, "/storeFile", {"localFilePath": str(missing)}))
        assert a.replace(str(theirs), "P") == b.replace(str(missing), "P")
        os.chmod(theirs, 0o644)  # world-readable: the client could read it, so may the node
        assert post(node, "/storeFile", {"localFilePath": str(theirs)}).json()["sha1"]
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_grpc_link_follows_the_same_path_policy(make_node, tmp_path: Path) -> None:
    import grpc
    from conftest import free_port

    from kachery_core.grpc_api import kachery_pb2 as pb
    from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc

    port = free_port()
    node = make_node("--grpc-port", str(port))
    key = node.storage_dir / "kachery-node-key.pem"
    missing = tmp_path / "missing"
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.KacheryStub(channel)
        metadata = [("kachery-client-auth-code", node.auth_code())]
        details = []
        for path in (key, missing):
            st_size = key.stat().st_size
            with pytest.raises(grpc.RpcError) as failed:
                stub.Link(
                    pb.LinkRequest(path=str(path), size=st_size, mtime=1.0),
                    metadata=metadata,
                    timeout=10,
                )
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details.append(failed.value.details().replace(str(path), "P"))
        assert details[0] == details[1]
    finally:
        channel.close()


# -- 6. file modes ---------------------------------------------------------------------


def test_the_nodes_private_files_are_private(node) -> None:
    post(node, "/mutable/set", {"key": "k", "value": 1})
    feed_id = post(node, "/feed/createFeed", {}).json()["feedId"]
    post(
        node,
        "/feed/appendMessages",
        {"feedId": feed_id, "subfeedHash": "b" * 40, "messages": [1]},
    )
    post(node, "/store", data=b"an object")
    public = {"kachery-node-id": 0o644, "client-auth": 0o640}
    seen = {}
    for path in node.storage_dir.iterdir():
        mode = path.stat().st_mode & 0o777
        seen[path.name] = mode
        if path.is_dir():
            assert mode & 0o007 == 0 and mode & 0o050 == 0o050, (path.name, oct(mode))
        else:
            assert mode == public.get(path.name, 0o600), (path.name, oct(mode))
    for name in ("kachery-mutables.db", "kachery-feeds.db", "kachery-daemon.json"):
        assert name in seen
    assert any(name.endswith("-wal") for name in seen)
