"""Helpers for the web page tests (test_ui_*.py): a tree with hostile names and files of
every preview kind, stored through a real node, and logged-in `requests` sessions."""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Dict, Optional

import requests
from conftest import command
from node_fixtures import NodeProcess

SCRIPT_NAME = "<script>document.title='pwned'<.txt"
IMG_NAME = "<img src=x onerror=\"document.title='pwned'\">.txt"
BIDI_NAME = "\u202eevil\u200b.txt"
HOSTILE_NAMES = (SCRIPT_NAME, IMG_NAME, BIDI_NAME)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
PAGES = ("/ui/", "/ui/browse", "/ui/activity", "/ui/channels", "/ui/tokens", "/ui/verify")
READ_PAGES = ("/ui/", "/ui/browse", "/ui/activity")
ADMIN_PAGES = ("/ui/channels", "/ui/tokens", "/ui/verify")


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A small red PNG, made here so no image file needs to be committed."""
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_tree(root: Path) -> Path:
    """A folder with hostile names and one file of each preview kind."""
    import numpy as np

    root.mkdir(parents=True)
    for name in HOSTILE_NAMES:
        (root / name).write_text(f"the file called {name}\n")
    (root / "data.json").write_text(json.dumps({"numbers": [1, 2, 3], "tag": "<b>bold</b>"}))
    (root / "table.csv").write_text("name,value\nalpha,1\n<i>beta</i>,2\n")
    np.save(root / "array.npy", np.zeros((3, 4), dtype="float32"))
    (root / "red.png").write_bytes(png_bytes())
    svg = "<svg xmlns='http://www.w3.org/2000/svg'><script>document.title='pwned'</script></svg>"
    (root / "drawing.svg").write_text(svg)
    (root / "page.html").write_text("<html><script>document.title='pwned'</script></html>")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("notes inside a folder\n")
    return root


def store(node: NodeProcess, path: Path, recursive: bool = False) -> str:
    """`kachery-client store-file [-r] PATH` through `node`: the URI it prints."""
    args = [command("kachery-client"), "store-file", *(["-r"] if recursive else []), str(path)]
    done = subprocess.run(args, capture_output=True, text=True, env=node.env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def login(node: NodeProcess, credential: str) -> requests.Session:
    """A browser-like session logged in with `credential` (it holds the cookie)."""
    session = requests.Session()
    answer = session.post(node.url + "/ui/login", data={"credential": credential}, timeout=30)
    assert answer.status_code == 200, answer.text  # after the redirect: the overview
    assert answer.url.endswith("/ui/"), answer.url
    return session


def get_json(session: requests.Session, url: str, **params: str) -> Dict:
    answer = session.get(url, params=params, headers={"Accept": "application/json"}, timeout=30)
    assert answer.headers["Content-Type"].startswith("application/json"), answer.text
    return answer.json()


def header(credential: str, accept: Optional[str] = None) -> Dict[str, str]:
    doc = {"KACHERY-CLIENT-AUTH-CODE": credential}
    if accept:
        doc["Accept"] = accept
    return doc


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]
