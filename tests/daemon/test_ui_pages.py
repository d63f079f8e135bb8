"""The node's web pages against a real node: every page as HTML and as JSON, the overview
and /metrics figures, browsing a stored tree, downloads, previews, and hostile names
shown as escaped text. Who may see what is in test_ui_access.py."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Dict
from urllib.parse import quote

import requests
from conftest import command
from node_fixtures import NodeProcess
from ui_helpers import (
    BIDI_NAME,
    IMG_NAME,
    PAGES,
    SCRIPT_NAME,
    get_json,
    header,
    login,
    make_tree,
    store,
)


def test_every_page_answers_html_and_json(node: NodeProcess) -> None:
    session = login(node, node.auth_code())
    for path in PAGES:
        html = session.get(node.url + path, timeout=30)
        assert html.status_code == 200, (path, html.text[:300])
        assert html.headers["Content-Type"].startswith("text/html"), path
        assert "<h1>" in html.text and "<nav>" in html.text, path
        doc = get_json(session, node.url + path)
        assert doc["success"] is True, path


def test_overview_figures_follow_the_store(node: NodeProcess, tmp_path: Path) -> None:
    session = login(node, node.auth_code())
    before = get_json(session, node.url + "/ui/")
    assert before["nodeId"] == node.probe()["nodeId"]  # type: ignore[index]
    assert before["addresses"] == [node.url]
    assert before["storage"]["objects"] == 0
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 1000)
    store(node, data)
    after = get_json(session, node.url + "/ui/")
    assert after["storage"]["objects"] == 1
    assert after["storage"]["objectBytes"] == 1000
    assert (after["storage"]["pinned"], after["storage"]["cached"]) == (1, 0)  # a store pins
    assert after["storageLimit"] is None
    page = session.get(node.url + "/ui/", timeout=30).text
    assert '<td id="objects">1</td>' in page and '<td id="pinned">1</td>' in page


def test_overview_shows_the_cache_limit_and_what_usage_says(
    make_node, kenv: Dict[str, str], tmp_path: Path
) -> None:
    storage = Path(kenv["KACHERY_STORAGE_DIR"])  # the clients' storage dir: they store in it
    node = make_node(
        "--max-cache-size", "3MiB", "--auth-rotate-seconds", "300", storage_dir=storage
    )
    (tmp_path / "one.txt").write_text("one\n")
    store(node, tmp_path / "one.txt")
    shown = get_json(login(node, node.auth_code()), node.url + "/ui/")
    assert shown["storageLimit"] == 3 * 1024 * 1024
    said = subprocess.run(
        [command("kachery-daemon"), "usage", "--json", "--storage-dir", str(node.storage_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert said.returncode == 0, said.stderr
    usage = json.loads(said.stdout)
    assert shown["storage"]["pinned"] == usage["pinned"]["count"] == 1
    assert shown["storage"]["pinnedBytes"] == usage["pinned"]["bytes"] == 4
    assert shown["storage"]["cached"] == usage["cached"]["count"] == 0


def test_metrics_are_prometheus_text(node: NodeProcess, tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("one\n")
    store(node, tmp_path / "one.txt")
    answer = requests.get(node.url + "/metrics", headers=node.headers(), timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    lines = answer.text.splitlines()
    assert "kachery_node_storage_objects 1" in lines
    assert "kachery_node_store_requests 1" in lines
    assert any(line.startswith("kachery_node_info{node_id=") for line in lines)
    for line in lines:  # every sample is NAME[{labels}] NUMBER
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_browse_a_tree_and_download_a_file(node: NodeProcess, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    uri = store(node, tree, recursive=True)
    assert uri.startswith("sha1dir://")
    session = login(node, node.auth_code())
    listing = get_json(session, node.url + "/ui/browse", uri=uri)["directory"]
    names = {f["name"] for f in listing["files"]}
    assert {SCRIPT_NAME, IMG_NAME, BIDI_NAME, "data.json", "red.png"} <= names
    assert [d["name"] for d in listing["dirs"]] == ["notes"]
    assert all(f["present"] for f in listing["files"])
    inner = get_json(session, node.url + "/ui/browse", uri=listing["dirs"][0]["uri"])
    readme = inner["directory"]["files"][0]
    assert readme["name"] == "readme.txt" and inner["directory"]["parent"] == uri
    got = session.get(node.url + "/ui/download", params={"uri": readme["uri"]}, timeout=30)
    assert got.status_code == 200
    assert got.content == (tree / "notes" / "readme.txt").read_bytes()
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"].startswith('attachment; filename="readme.txt"')
    page = session.get(node.url + "/ui/browse", params={"uri": uri}, timeout=30).text
    assert page.count('class="copy"') == len(listing["files"]) + len(listing["dirs"])
    assert page.count('class="download"') == len(listing["files"])


def test_file_page_shows_size_hash_presence_and_chunks(node: NodeProcess, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x01" * 20_000_001)  # just over the manifest threshold: two chunks
    uri = store(node, big)
    session = login(node, node.auth_code())
    doc = get_json(session, node.url + "/ui/browse", uri=uri)["file"]
    assert doc["size"] == 20_000_001 and doc["present"] is True
    assert doc["sha1"] == hashlib.sha1(big.read_bytes()).hexdigest()
    assert [(c["start"], c["end"]) for c in doc["chunks"]] == [
        (0, 20_000_000),
        (20_000_000, 20_000_001),
    ]
    assert doc["preview"] == {"kind": "binary"}
    missing = get_json(session, node.url + "/ui/browse", uri="sha1://" + "7" * 40)
    assert missing["file"]["present"] is False
    bad = get_json(session, node.url + "/ui/browse", uri="sha1://nothex")
    assert bad["success"] is False and "invalid URI" in bad["error"]


def test_previews_of_each_kind(node: NodeProcess, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    uri = store(node, tree, recursive=True)
    session = login(node, node.auth_code())

    def preview(name: str) -> dict:
        return get_json(session, node.url + "/ui/browse", uri=f"{uri}/{quote(name)}")["file"][
            "preview"
        ]

    assert preview("data.json")["kind"] == "json"
    assert '"tag": "<b>bold</b>"' in preview("data.json")["text"]
    assert preview("table.csv") == {
        "kind": "csv",
        "rows": [["name", "value"], ["alpha", "1"], ["<i>beta</i>", "2"]],
        "truncated": False,
    }
    assert preview("array.npy") == {
        "kind": "npy",
        "shape": [3, 4],
        "dtype": "float32",
        "fortranOrder": False,
    }
    assert preview("red.png") == {"kind": "image", "type": "image/png"}
    assert preview("drawing.svg")["kind"] == "text"  # never an image: SVG can script
    assert preview("page.html")["kind"] == "text"
    listing = get_json(session, node.url + "/ui/browse", uri=uri)["directory"]["files"]
    uris = {f["name"]: f["uri"] for f in listing}
    image = session.get(node.url + "/ui/image", params={"uri": uris["red.png"]}, timeout=30)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert image.content == (tree / "red.png").read_bytes()
    for name in ("drawing.svg", "page.html"):
        refused = session.get(node.url + "/ui/image", params={"uri": uris[name]}, timeout=30)
        assert refused.status_code == 415, name
        page = session.get(node.url + "/ui/browse", params={"uri": uris[name]}, timeout=30).text
        assert "<script>document.title" not in page, name
        assert "&lt;script&gt;document.title" in page, name
    npy_page = session.get(node.url + "/ui/browse", params={"uri": uris["array.npy"]}).text
    assert '<code id="npy-shape">(3, 4)</code>' in npy_page
    csv_page = session.get(node.url + "/ui/browse", params={"uri": uris["table.csv"]}).text
    assert "<td>&lt;i&gt;beta&lt;/i&gt;</td>" in csv_page


def test_hostile_names_render_as_visible_escaped_text(node: NodeProcess, tmp_path: Path) -> None:
    uri = store(node, make_tree(tmp_path / "tree"), recursive=True)
    session = login(node, node.auth_code())
    page = session.get(node.url + "/ui/browse", params={"uri": uri}, timeout=30).text
    assert "<script>document" not in page and "<img src=x" not in page
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;.txt" in page
    assert "&lt;img src=x onerror=&#34;document.title=&#39;pwned&#39;&#34;&gt;.txt" in page
    assert "\u202e" not in page and "\u200b" not in page  # neither reorders nor hides text
    assert "\\u202eevil\\u200b.txt" in page


def test_activity_lists_stores_loads_and_refusals(node: NodeProcess, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    uri = store(node, tmp_path / "a.txt")
    loaded = requests.post(  # the http backend reads the storage itself: ask the node
        node.url + "/loadFile", json={"fileKey": {"sha1": uri[7:47]}}, headers=node.headers()
    )
    assert loaded.status_code == 200, loaded.text
    refused = requests.post(node.url + "/store", data=b"x", headers=header("kt_wrong"))
    assert refused.status_code == 403
    doc = get_json(login(node, node.auth_code()), node.url + "/ui/activity")
    kinds = [e["kind"] for e in doc["events"]]
    assert kinds[:3] == ["refused", "load", "store"]  # newest first
    assert doc["events"][0]["detail"].startswith("unknown or revoked access token")
    overview = get_json(requests.Session(), node.url + "/ui/", **{})  # no credential
    assert overview["success"] is False


def test_verify_page_shows_the_last_run_and_the_quarantine(
    node: NodeProcess, tmp_path: Path
) -> None:
    (tmp_path / "v.txt").write_text("to be damaged\n")
    uri = store(node, tmp_path / "v.txt")
    sha1 = uri[len("sha1://") :].split("/")[0]
    session = login(node, node.auth_code())
    assert get_json(session, node.url + "/ui/verify")["lastRun"] is None
    path = node.storage_dir / "sha1" / sha1[:2] / sha1[2:4] / sha1[4:6] / sha1
    path.chmod(0o644)
    path.write_text("damaged bytes\n")
    done = subprocess.run(
        [command("kachery-daemon"), "verify", "--storage-dir", str(node.storage_dir)],
        capture_output=True,
        env=node.env,
    )
    assert done.returncode == 1, done.stderr
    doc = get_json(session, node.url + "/ui/verify")
    assert doc["lastRun"]["exitCode"] == 1 and doc["lastRun"]["scope"] == "all"
    assert [q["name"].split(".")[0] for q in doc["quarantine"]] == [sha1]
    page = session.get(node.url + "/ui/verify", timeout=30).text
    assert "problems found" in page and sha1 in page
