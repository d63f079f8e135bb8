"""Large uploads to a real node (`POST /store`): each gathered piece is hashed and written
on a worker thread while the next one arrives. Whatever the sizes the bytes arrive in, the
object and its manifest are the embedded store's; a body cut off midway keeps nothing."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
from pathlib import Path
from typing import Any, List

import requests

from kachery_core.store.local import LocalStorage


def _files(root: Path) -> List[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_an_upload_in_uneven_pieces_is_the_embedded_store_s_object(
    node: Any, tmp_path: Path
) -> None:
    data = os.urandom(45_000_003)
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
    conn.putrequest("POST", "/store")
    conn.putheader("KACHERY-CLIENT-AUTH-CODE", node.auth_code())
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders()
    at = 0
    for size in [1, 7_000, 3 << 20, 9 << 20, 1, 19_999_990, 5]:
        conn.send(data[at : at + size])
        at += size
    conn.send(data[at:])
    answer = conn.getresponse()
    doc = json.loads(answer.read())
    conn.close()
    assert answer.status == 200, doc
    embedded = LocalStorage(tmp_path / "embedded").store_bytes(data)
    assert (doc["sha1"], doc["manifestSha1"]) == (embedded.sha1, embedded.manifest_sha1)
    assert doc["sha1"] == hashlib.sha1(data).hexdigest()
    fetched = requests.post(
        node.url + "/downloadFileData",
        json={"fileKey": {"sha1": doc["sha1"]}},
        headers=node.headers(),
        timeout=60,
    )
    assert fetched.content == data
    assert _files(node.storage_dir / "tmp") == []


def test_an_upload_cut_off_midway_keeps_nothing(node: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    conn.putrequest("POST", "/store")
    conn.putheader("KACHERY-CLIENT-AUTH-CODE", node.auth_code())
    conn.putheader("Content-Length", str(40_000_000))
    conn.endheaders()
    conn.send(os.urandom(13_000_000))  # several pieces in, one of them still being written
    time.sleep(0.3)
    conn.close()
    deadline = time.monotonic() + 20
    while _files(node.storage_dir / "tmp") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _files(node.storage_dir / "tmp") == []
    assert _files(node.storage_dir / "sha1") == []
    assert requests.get(node.url + "/probe", timeout=5).status_code == 200
