"""The original `kachery-client==1.2.0` from PyPI, in its own virtualenv, against our node.

The virtualenv is made once and reused (under the system temp dir, keyed on this Python's
version) because installing it takes a while; it holds only that package and numpy, which
it imports without declaring.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Dict

import pytest
from conftest import sha1_file, write_random_file
from original_client import AWAY, ORIGINAL, original_client_venv


@pytest.fixture(scope="session")
def original_venv() -> Path:
    venv = original_client_venv()
    assert venv is not None, f"pip could not install {ORIGINAL} (see its output above)"
    return venv


def _env(kenv: Dict[str, str], node) -> Dict[str, str]:
    return dict(kenv, KACHERY_STORAGE_DIR=str(node.storage_dir), KACHERY_DAEMON_PORT=str(node.port))


def _original(venv: Path, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "kachery-client"), *args],
        capture_output=True,
        env=env,
        timeout=120,
        cwd=AWAY,
    )


def test_original_cli_against_our_node(
    original_venv: Path, node, kenv, cli, tmp_path: Path
) -> None:
    env = _env(kenv, node)
    src = write_random_file(tmp_path / "data.bin", 25_000_000, seed=5)
    stored = _original(original_venv, env, "store-file", str(src))
    assert stored.returncode == 0, stored.stderr
    uri = stored.stdout.decode().strip().splitlines()[-1]
    ours = cli("store-file", str(src), env=env).stdout.strip()
    assert uri == ours  # same URI, manifest hash included, for the same bytes
    loaded = _original(original_venv, env, "load-file", uri)
    assert loaded.returncode == 0, loaded.stderr
    path = Path(loaded.stdout.decode().strip().splitlines()[-1])
    assert sha1_file(path) == sha1_file(src)
    assert _original(original_venv, env, "cat-file", uri).stdout == src.read_bytes()
    part = _original(original_venv, env, "cat-file", uri, "--start", "1000", "--end", "2000")
    assert part.stdout == src.read_bytes()[1000:2000]

    linked = tmp_path / "linked.txt"
    linked.write_text("original link")
    result = _original(original_venv, env, "link-file", str(linked))
    assert result.returncode == 0, result.stderr
    link_uri = result.stdout.decode().strip().splitlines()[-1]
    assert cli("cat-file", link_uri, env=env).stdout == "original link"


PYTHON_API = r"""
import json, sys
import numpy as np
import kachery_client as kc
out = {}
u = kc.store_text("some text"); out["text"] = [u, kc.load_text(u)]
u = kc.store_json({"a": [1, 2]}); out["json"] = [u, kc.load_json(u)]
u = kc.store_npy(np.arange(6).reshape(2, 3)); out["npy"] = [u, kc.load_npy(u).tolist()]
kc.set({"key": 1}, {"value": "v"}); out["get"] = kc.get({"key": 1})
feed = kc.create_feed()
subfeed = feed.load_subfeed("results")
subfeed.append_message({"m": 1})
subfeed.append_messages([{"m": 2}, {"m": 3}])
reader = kc.load_subfeed(subfeed.uri)
out["messages"] = reader.get_next_messages(wait_msec=100)
out["num"] = reader.get_num_local_messages()
out["more"] = reader.get_next_messages(wait_msec=200)
out["uri"] = subfeed.uri
print(json.dumps(out))
"""


def test_original_python_api_against_our_node(original_venv: Path, node, kenv) -> None:
    env = _env(kenv, node)
    result = subprocess.run(
        [str(original_venv / "bin" / "python"), "-c", PYTHON_API],
        capture_output=True,
        env=env,
        timeout=120,
        cwd=AWAY,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert out["text"][1] == "some text"
    assert out["json"][1] == {"a": [1, 2]}
    assert out["npy"][1] == [[0, 1, 2], [3, 4, 5]]
    assert out["get"] == {"value": "v"}
    assert out["messages"] == [{"m": 1}, {"m": 2}, {"m": 3}]
    assert out["num"] == 3 and out["more"] == []
    assert out["uri"].startswith("feed://")

    # What the original client stored, ours reads the same way.
    import kachery_client as kc

    client = kc.Client(storage_dir=str(node.storage_dir), daemon_port=node.port)
    assert client.load_text(out["text"][0]) == "some text"
    assert client.load_json(out["json"][0]) == {"a": [1, 2]}
    assert client.load_npy(out["npy"][0]).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert client.get({"key": 1}) == {"value": "v"}
    assert os.path.exists(client.load_file(out["npy"][0]))


FIELD_API = r"""
import json, os, sys, tempfile, time
import kachery_client as kc
out = {}
u = kc.store_text(""); out["empty_text"] = [u, kc.load_text(u)]
empty = os.path.join(tempfile.mkdtemp(), "empty.bin")
open(empty, "wb").close()
out["empty_file"] = kc.store_file(empty)
feed = kc.create_feed()
subfeed = feed.load_subfeed("results")
subfeed.append_messages([{"m": 1}, {"m": 2}])
reader = kc.load_subfeed(subfeed.uri)
started = time.monotonic()
out["long_wait"] = reader.get_next_messages(wait_msec=180000)
out["long_wait_seconds"] = time.monotonic() - started
out["signed"] = kc.load_subfeed(subfeed.uri).get_next_messages(wait_msec=0, signed=True)
feed_id = subfeed.uri.split("/")[2]
watches = {
    "done": {"feedId": feed_id, "subfeedName": "results", "position": 2},
    "other": {"feedId": feed_id, "subfeedName": "other", "position": 0},
}
res = kc.watch_for_new_messages(watches, wait_msec=100)
out["timed_out"] = [res["done"], res["other"]]
print(json.dumps(out))
"""


def test_original_client_empty_stores_long_waits_and_timeouts(
    original_venv: Path, node, kenv
) -> None:
    """Field reports: `store_text('')`, `wait_msec` above the node's maximum, `res[name]`
    after a watch timed out, and millisecond timestamps on signed messages."""
    env = _env(kenv, node)
    result = subprocess.run(
        [str(original_venv / "bin" / "python"), "-c", FIELD_API],
        capture_output=True,
        env=env,
        timeout=120,
        cwd=AWAY,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout.decode().strip().splitlines()[-1])
    empty_sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    assert out["empty_text"][0].startswith(f"sha1://{empty_sha1}") and out["empty_text"][1] == ""
    assert out["empty_file"].startswith(f"sha1://{empty_sha1}")
    assert out["long_wait"] == [{"m": 1}, {"m": 2}] and out["long_wait_seconds"] < 10
    assert out["timed_out"] == [[], []]
    bodies = [envelope["body"] for envelope in out["signed"]]
    assert [body["message"] for body in bodies] == [{"m": 1}, {"m": 2}]
    for body in bodies:  # integer milliseconds, as the original daemon wrote them
        assert isinstance(body["timestamp"], int)
        assert abs(body["timestamp"] / 1000.0 - time.time()) < 600
