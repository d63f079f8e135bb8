"""The `remote` backend against a real node on loopback, as a client on another machine sees it.

The node's storage is not shared here unless a test says so: KACHERY_STORAGE_DIR is the
client's own cache, and access goes through tokens from `kachery-daemon token create`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import command, sha1_file, write_random_file
from node_fixtures import make_token

from kachery_core.store.layout import StorageLayout


def _remote_env(kenv: Dict[str, str], node, cache: Path, token: str) -> Dict[str, str]:
    return dict(
        kenv,
        KACHERY_TRANSPORT="remote",
        KACHERY_DAEMON_PORT=str(node.port),
        KACHERY_STORAGE_DIR=str(cache),
        KACHERY_AUTH_TOKEN=token,
    )


def _node_stats(node) -> Dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    conn.request("GET", "/stats", headers=node.headers())
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return doc


def test_store_and_load_through_the_connection(make_node, cli, kenv, tmp_path: Path) -> None:
    node = make_node()
    cache = tmp_path / "laptop-cache"
    env = _remote_env(kenv, node, cache, make_token(node, "laptop"))
    src = write_random_file(tmp_path / "big.bin", 45_000_000, seed=11)
    stored = cli("store-file", str(src), env=env)
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    assert "?manifest=" in uri
    sha1 = sha1_file(src)
    assert StorageLayout(node.storage_dir).object_path(sha1).exists()  # the bytes went over
    assert not cache.exists() or not StorageLayout(cache).object_path(sha1).exists()

    loaded = cli("load-file", uri, env=env)
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    assert path == StorageLayout(cache).object_path(sha1)  # in the client's own cache
    assert sha1_file(path) == sha1
    assert list((cache / "tmp").glob("*")) == []  # nothing left behind
    part = cli("cat-file", uri, "--start", "19999990", "--end", "20000010", env=env)
    assert part.stdout_bytes == src.read_bytes()[19_999_990:20_000_010]

    info = cli("info", env=env)
    assert "remote" in info.stdout and str(cache) in info.stdout


def test_default_cache_is_per_user(make_node, cli, kenv, tmp_path: Path) -> None:
    node = make_node()
    env = _remote_env(kenv, node, tmp_path / "unused", make_token(node, "laptop"))
    del env["KACHERY_STORAGE_DIR"]
    src = tmp_path / "small.txt"
    src.write_text("cached per user")
    uri = cli("store-file", str(src), env=env).stdout.strip()
    loaded = cli("load-file", uri, env=env)
    assert loaded.returncode == 0, loaded
    assert loaded.stdout.strip().startswith(str(Path(kenv["XDG_CACHE_HOME"]) / "kachery") + "/")


def test_shared_storage_is_read_in_place(make_node, cli, kenv, tmp_path: Path) -> None:
    node = make_node()
    env = dict(kenv, KACHERY_TRANSPORT="remote", KACHERY_DAEMON_PORT=str(node.port))
    env["KACHERY_STORAGE_DIR"] = str(node.storage_dir)  # "mounted" here: same kachery-node-id
    src = tmp_path / "shared.txt"
    src.write_text("no copy needed")
    linked = cli("link-file", str(src), env=env)  # the node can see this path: linking works
    assert linked.returncode == 0, linked
    loaded = cli("load-file", linked.stdout.strip(), env=env)
    assert Path(loaded.stdout.strip()).resolve() == src.resolve()


def test_tokens_create_list_revoke(make_node, cli, kenv, tmp_path: Path) -> None:
    node = make_node()
    token = make_token(node, "alice laptop")
    assert token.startswith("kt_") and len(token) > 40
    saved = json.loads((node.storage_dir / "kachery-tokens.json").read_text())
    assert token not in json.dumps(saved)  # only its hash is kept
    assert (node.storage_dir / "kachery-tokens.json").stat().st_mode & 0o777 == 0o600
    listed = cli("token", "list", "--storage-dir", str(node.storage_dir), program="kachery-daemon")
    assert "alice laptop" in listed.stdout and token not in listed.stdout

    env = _remote_env(kenv, node, tmp_path / "cache", token)
    src = tmp_path / "a.txt"
    src.write_text("token works")
    assert cli("store-file", str(src), env=env).returncode == 0

    token_file = tmp_path / "token.txt"
    token_file.write_text(token + "\n")
    via_file = {k: v for k, v in env.items() if k != "KACHERY_AUTH_TOKEN"}
    config = Path(kenv["KACHERY_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'auth_token_file = "{token_file}"\n')
    assert cli("store-file", str(src), env=via_file).returncode == 0

    revoked = cli(
        "token",
        "revoke",
        "alice laptop",
        "--storage-dir",
        str(node.storage_dir),
        program="kachery-daemon",
    )
    assert revoked.returncode == 0, revoked
    refused = cli("store-file", str(src), env=env)  # the running node sees it at once
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "unknown or revoked access token" in refused.stderr

    unknown = cli(
        "token",
        "revoke",
        "nobody",
        "--storage-dir",
        str(node.storage_dir),
        program="kachery-daemon",
    )
    assert unknown.returncode == 1 and "nobody" in unknown.stderr


def test_no_token_is_a_clear_error(make_node, cli, kenv, tmp_path: Path) -> None:
    node = make_node()
    env = _remote_env(kenv, node, tmp_path / "cache", "x" * 20)
    del env["KACHERY_AUTH_TOKEN"]
    src = tmp_path / "a.txt"
    src.write_text("who are you")
    result = cli("store-file", str(src), env=env)
    assert result.returncode == 1
    assert (
        "needs an access token" in result.stderr and "kachery-daemon token create" in result.stderr
    )


@pytest.mark.parametrize(
    "route, body",
    [
        ("/stats", None),
        ("/store", b"abc"),
        ("/mutable/get", b'{"key": "k"}'),
        ("/downloadFileData", b'{"fileKey": {"sha1": "' + b"0" * 40 + b'"}}'),
        ("/feed/createFeed", b"{}"),
    ],
)
def test_every_route_but_probe_needs_a_credential(node, route: str, body: bytes) -> None:
    for header in (
        {},
        {"KACHERY-CLIENT-AUTH-CODE": "kt_" + "A" * 43},
        {"KACHERY-CLIENT-AUTH-CODE": "nope"},
    ):
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        conn.request("GET" if body is None else "POST", route, body=body, headers=header)
        response = conn.getresponse()
        assert response.status == 403, (route, header)
        assert b"\n" not in response.read().strip()
        conn.close()


def test_interrupted_load_resumes(make_node, cli, kenv, tmp_path: Path) -> None:
    node = make_node()
    token = make_token(node, "laptop")
    src = write_random_file(tmp_path / "big.bin", 300_000_000, seed=12)
    sha1 = sha1_file(src)
    cache = tmp_path / "cache"
    env = _remote_env(kenv, node, cache, token)
    uri = cli(
        "store-file",
        str(src),
        env=dict(env, KACHERY_TRANSPORT="local", KACHERY_STORAGE_DIR=str(node.storage_dir)),
    ).stdout.strip()
    assert "?manifest=" in uri

    partial = cache / "tmp" / f"{sha1}.download"
    client = subprocess.Popen(
        [command("kachery-client"), "load-file", uri],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if partial.exists() and partial.stat().st_size > 50_000_000:
            break
        time.sleep(0.002)
    os.kill(client.pid, signal.SIGSTOP)  # freeze the reader, then take the node away
    os.kill(node.pid, signal.SIGKILL)
    node.proc.wait()
    os.kill(client.pid, signal.SIGCONT)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 1, (out, err)
    assert err.decode().startswith("Error: ") and err.decode().count("\n") == 1
    assert not StorageLayout(cache).object_path(sha1).exists()  # no partial object
    kept = partial.stat().st_size
    assert kept >= 40_000_000

    node.proc = None
    node.start()
    again = cli("load-file", uri, env=env)
    assert again.returncode == 0, again
    assert sha1_file(Path(again.stdout.strip())) == sha1
    sent = _node_stats(node)["stats"]["downloadedBytes"]
    assert sent <= 300_000_000 - (kept // 20_000_000) * 20_000_000  # only what was missing
    assert not partial.exists()


def test_corrupt_partial_download_is_not_trusted(make_node, cli, kenv, tmp_path: Path) -> None:
    node = make_node()
    env = _remote_env(kenv, node, tmp_path / "cache", make_token(node, "laptop"))
    src = write_random_file(tmp_path / "big.bin", 50_000_000, seed=13)
    uri = cli("store-file", str(src), env=env).stdout.strip()
    sha1 = sha1_file(src)
    partial = tmp_path / "cache" / "tmp" / f"{sha1}.download"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 30_000_000)  # a leftover that is not the file's bytes
    loaded = cli("load-file", uri, env=env)
    assert loaded.returncode == 0, loaded
    assert sha1_file(Path(loaded.stdout.strip())) == sha1


def test_stalled_node_times_out(make_node, cli, kenv, tmp_path: Path) -> None:
    node = make_node()
    env = _remote_env(kenv, node, tmp_path / "cache", make_token(node, "laptop"))
    src = tmp_path / "a.txt"
    src.write_text("stall")
    uri = cli("store-file", str(src), env=env).stdout.strip()
    os.kill(node.pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        result = cli(
            "load-file",
            uri,
            env=dict(env, KACHERY_READ_TIMEOUT="1.5", KACHERY_CONNECT_TIMEOUT="1.5"),
        )
        elapsed = time.monotonic() - began
    finally:
        os.kill(node.pid, signal.SIGCONT)
    assert result.returncode == 1
    assert elapsed < 15
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1


def test_node_restart_between_calls(make_node, kenv, cli, tmp_path: Path) -> None:
    node = make_node()
    token = make_token(node, "laptop")
    import kachery_client as kc

    client = kc.Client(
        transport="remote",
        daemon_port=node.port,
        storage_dir=str(tmp_path / "cache"),
        auth_token=token,
    )
    first = client.store_text("before the restart")
    node.stop()
    node.start()
    assert client.load_text(first) == "before the restart"
    second = client.store_text("after the restart")
    assert client.load_text(second) == "after the restart"
    client.close()


def test_16_remote_clients(make_node, kenv, cli, tmp_path: Path) -> None:
    node = make_node()
    token = make_token(node, "laptop")
    import kachery_client as kc

    errors: List[str] = []

    def work(index: int) -> None:
        try:
            client = kc.Client(
                transport="remote",
                daemon_port=node.port,
                storage_dir=str(tmp_path / f"cache-{index}"),
                auth_token=token,
            )
            uris = [
                (client.store_text(f"client {index} file {i}"), f"client {index} file {i}")
                for i in range(50)
            ]
            for uri, text in uris:
                assert client.load_text(uri) == text
            client.close()
        except Exception as exc:
            errors.append(f"{index}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    expected = {
        hashlib.sha1(f"client {i} file {j}".encode()).hexdigest()
        for i in range(16)
        for j in range(50)
    }
    assert all(StorageLayout(node.storage_dir).object_path(s).exists() for s in expected)
