"""Access tokens against real nodes: the token file's scopes, token files from before
scopes and malformed ones, racing token commands, and a client holding a token on a
machine that shares the node's storage (it sends bytes, never paths).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Dict

import pytest
import requests
from conftest import command
from node_fixtures import NodeProcess
from token_helpers import daemon, make_token

from kachery_daemon.tokens import TokenStore

# -- the token file ----------------------------------------------------------------------


def test_token_list_shows_scopes(node, kenv: Dict[str, str]) -> None:
    for scope in ("read", "write", "admin"):
        make_token(node, f"as {scope}", scope)
    make_token(node, "as default")
    listed = daemon("token", "list", "--storage-dir", str(node.storage_dir), env=kenv)
    assert listed.returncode == 0, listed.stderr
    scope_of = {line.split()[-1]: line.split()[3] for line in listed.stdout.splitlines()}
    assert scope_of == {"read": "read", "write": "write", "admin": "admin", "default": "write"}
    saved = json.loads((node.storage_dir / "kachery-tokens.json").read_text())
    assert [t["scope"] for t in saved["tokens"]] == ["read", "write", "admin", "write"]
    bad = daemon(
        "token",
        "create",
        "--label",
        "x",
        "--scope",
        "root",
        "--storage-dir",
        str(node.storage_dir),
        env=kenv,
    )
    assert bad.returncode == 2 and "'root' is not one of" in bad.stderr


def test_token_file_from_before_scopes_still_works(make_node, tmp_path: Path) -> None:
    storage = tmp_path / "old-storage"
    storage.mkdir()
    token = "kt_" + "o" * 43
    digest = hashlib.sha256(token.encode()).hexdigest()
    record = {"id": digest[:12], "label": "old laptop", "created": 1700000000.0, "sha256": digest}
    (storage / "kachery-tokens.json").write_text(json.dumps({"tokens": [record]}))
    node = make_node(storage_dir=storage)
    headers = {"KACHERY-CLIENT-AUTH-CODE": token}
    stored = requests.post(node.url + "/store", data=b"old token", headers=headers, timeout=30)
    assert stored.status_code == 200, stored.text
    stats = requests.get(node.url + "/stats", headers=headers, timeout=30)
    assert stats.status_code == 403 and "scope 'write'" in stats.text
    listed = daemon("token", "list", "--storage-dir", str(storage), env=node.env)
    assert listed.stdout.split()[3:] == ["write", "old", "laptop"]


@pytest.mark.parametrize(
    "content, named",
    [
        ("{not json", "cannot read token file"),
        ('{"tokens": {}}', "has no list of 'tokens'"),
        ('{"tokens": [{"id": "a", "label": "b", "created": 1}]}', "token 1 in"),
        (
            '{"tokens": [{"id": "a", "label": "b", "created": 1, "sha256": "%s", "scope": "root"}]}',
            "scope 'root'",
        ),
    ],
)
def test_a_malformed_token_file_refuses_tokens_cleanly(node, content: str, named: str) -> None:
    token = make_token(node, "fine")
    headers = {"KACHERY-CLIENT-AUTH-CODE": token}
    assert requests.post(
        node.url + "/mutable/get", json={"key": "k"}, headers=headers, timeout=30
    ).ok
    (node.storage_dir / "kachery-tokens.json").write_text(content.replace("%s", "0" * 64))
    refused = requests.post(
        node.url + "/mutable/get", json={"key": "k"}, headers=headers, timeout=30
    )
    assert refused.status_code == 403, refused.text
    assert refused.headers["KACHERY-ERROR-TYPE"] == "refused"
    reason = refused.text.strip()
    assert "\n" not in reason and named in reason and "refuses every access token" in reason
    code = requests.post(
        node.url + "/mutable/get", json={"key": "k"}, headers=node.headers(), timeout=30
    )
    assert code.status_code == 200  # the local users' code does not depend on the file
    for args in (("list",), ("create", "--label", "new"), ("revoke", "fine")):
        result = daemon("token", *args, "--storage-dir", str(node.storage_dir), env=node.env)
        assert result.returncode == 1, result
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
        assert named in result.stderr


# -- racing token commands -------------------------------------------------------------------


def _spawn(node: NodeProcess, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [command("kachery-daemon"), "token", *args, "--storage-dir", str(node.storage_dir)],
        env=node.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return str(out).strip()


def test_a_revoke_racing_a_create_stays_revoked(node) -> None:
    store = TokenStore(node.storage_dir)
    victims = [store.create(f"victim {i}")[1] for i in range(20)]
    for i, victim in enumerate(victims):
        revoke = _spawn(node, "revoke", f"victim {i}")
        create = _spawn(node, "create", "--label", f"bystander {i}")
        _finish(revoke)
        bystander = _finish(create)
        labels = [r.label for r in store.records()]
        assert f"victim {i}" not in labels and f"bystander {i}" in labels, (i, labels)
        refused = requests.post(
            node.url + "/mutable/get",
            json={"key": "k"},
            headers={"KACHERY-CLIENT-AUTH-CODE": victim},
            timeout=30,
        )
        assert refused.status_code == 403 and "revoked" in refused.text, (i, refused.text)
        accepted = requests.post(
            node.url + "/mutable/get",
            json={"key": "k"},
            headers={"KACHERY-CLIENT-AUTH-CODE": bystander},
            timeout=30,
        )
        assert accepted.status_code == 200, (i, accepted.text)


def test_concurrent_creates_keep_every_token(node) -> None:
    procs = [_spawn(node, "create", "--label", f"laptop {i}", "--scope", "read") for i in range(8)]
    tokens = [_finish(p) for p in procs]
    records = TokenStore(node.storage_dir).records()
    assert sorted(r.label for r in records) == sorted(f"laptop {i}" for i in range(8))
    path = node.storage_dir / "kachery-tokens.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (node.storage_dir / "kachery-tokens.json.lock").exists()
    assert not [p for p in os.listdir(node.storage_dir) if p.endswith(".tmp")]
    for token in tokens:
        headers = {"KACHERY-CLIENT-AUTH-CODE": token}
        answer = requests.post(
            node.url + "/mutable/get", json={"key": "k"}, headers=headers, timeout=30
        )
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("backend", ["http", "remote"])
def test_a_client_with_a_token_sends_bytes_not_paths(node, cli, kenv, tmp_path, backend) -> None:
    """With the node's storage shared but a token as the credential, store-file sends the
    bytes (the node refuses paths from tokens) and link-file is refused before any request."""
    env = dict(
        kenv,
        KACHERY_BACKEND=backend,
        KACHERY_DAEMON_PORT=str(node.port),
        KACHERY_STORAGE_DIR=str(node.storage_dir),
        KACHERY_AUTH_TOKEN=make_token(node, "shared-storage laptop"),
    )
    source = tmp_path / "results.txt"
    source.write_bytes(b"measured with a token")
    stored = cli("store-file", str(source), env=env)
    assert stored.returncode == 0, stored
    assert stored.stdout.startswith("sha1://" + hashlib.sha1(source.read_bytes()).hexdigest())
    linked = cli("link-file", str(source), env=env)
    assert linked.returncode == 1, linked
    assert linked.stderr.count("\n") == 1 and "access token" in linked.stderr
    assert "use store-file" in linked.stderr
