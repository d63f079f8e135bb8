"""Progress frames of channel transfers carry the object's real size, never a total of 0
(the original kachery-client prints that as "Loaded 0 of 0 bytes (100.0 %)").

Real nodes and a real S3 store (SeaweedFS), with the `lab` of channel_fixtures.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import requests
from channel_fixtures import Lab
from conftest import write_random_file

from kachery_core.content.uri import parse_uri
from kachery_core.protocol import wire

SIZE = 25_000_000  # over 20,000,000: a manifest, two chunks


def _frames(node: Any, path: str, doc: Dict[str, Any]) -> List[Dict[str, Any]]:
    with requests.post(
        node.url + path, json=doc, headers=node.headers(), stream=True, timeout=120
    ) as response:
        assert response.status_code == 200, response.text
        return list(wire.read_frames(response.raw.read))


def _check(frames: List[Dict[str, Any]], size: int) -> List[Dict[str, Any]]:
    assert frames and frames[-1]["type"] == "finished", frames
    progress = [f for f in frames if f["type"] == "progress"]
    assert progress and all(f["bytesTotal"] == size for f in progress), progress
    return progress


def _file_key(uri: str) -> Dict[str, Any]:
    parsed = parse_uri(uri)
    return {"sha1": parsed.sha1, "manifestSha1": parsed.manifest_sha1}


def test_upload_and_provided_load_report_the_real_size(
    lab: Lab,
    cli: Any,
    tmp_path: Path,
) -> None:
    a = lab.node("a", provide=True, poll_seconds=0.3)
    b = lab.node("b")
    src = write_random_file(tmp_path / "a.bin", SIZE, seed=7)
    uri = cli("store-file", str(src), env=lab.env(a)).stdout.strip()
    # B waits for A to provide it, without its manifest: no progress until the size is known
    load = {"fileKey": _file_key(uri), "channelName": "lab", "channelTimeout": 60}
    _check(_frames(b, "/loadFile", load), SIZE)
    other = write_random_file(tmp_path / "b.bin", SIZE, seed=8)
    other_uri = cli("store-file", str(other), env=lab.env(a)).stdout.strip()
    upload = {"fileKey": _file_key(other_uri), "channelName": "lab"}
    # even an upload that ends within the first progress tick sends one frame with the size
    _check(_frames(a, "/channel/upload", upload), SIZE)


def test_waiting_for_a_provider_reports_the_size_from_a_stored_manifest(
    lab: Lab,
    cli: Any,
    tmp_path: Path,
) -> None:
    a = lab.node("a", provide=True, poll_seconds=2.5)
    b = lab.node("b")
    src = write_random_file(tmp_path / "a.bin", SIZE, seed=9)
    uri = cli("store-file", str(src), env=lab.env(a)).stdout.strip()
    key = _file_key(uri)
    manifest = requests.post(
        a.url + "/downloadFileData",
        json={"fileKey": {"sha1": key["manifestSha1"]}},
        headers=a.headers(),
        timeout=30,
    ).content
    stored = requests.post(b.url + "/store", data=manifest, headers=b.headers(), timeout=30)
    assert stored.json()["sha1"] == key["manifestSha1"]
    load = {"fileKey": key, "channelName": "lab", "channelTimeout": 60}
    progress = _check(_frames(b, "/loadFile", load), SIZE)
    assert any(f.get("stage") == "waiting for a provider" for f in progress), progress
