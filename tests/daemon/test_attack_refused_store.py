"""A path request that fails keeps nothing, and `/proc` and `/sys` are never read.

`/proc/<pid>/environ` of the node holds its secrets (an S3 key of a channel); such files
report a size of 0 and then yield bytes, so a store that checked only afterwards kept
them as an object although it answered 400. Here a real node is asked for them, and for a
file that grows while it is read, and its storage directory is compared before and after.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Set

import requests

PSEUDO_FILES = (
    "/proc/{pid}/environ",
    "/proc/{pid}/cmdline",
    "/proc/{pid}/status",
    "/proc/{pid}/maps",
    "/proc/self/environ",
    "/proc/kallsyms",
    "/proc/version",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/class/net/lo/address",
)


def kept(storage: Path) -> Set[str]:
    """Every file in the storage directory's objects and staging area."""
    found = set()
    for folder in ("sha1", "tmp"):
        root = storage / folder
        if root.exists():
            found.update(str(p.relative_to(storage)) for p in root.rglob("*") if not p.is_dir())
    return found


def post(node: Any, route: str, doc: Dict[str, Any]) -> requests.Response:
    return requests.post(node.url + route, json=doc, headers=node.headers(), timeout=60)


def test_proc_and_sys_are_outside_every_path_policy(node: Any) -> None:
    before = kept(node.storage_dir)
    tried: List[str] = []
    for pattern in PSEUDO_FILES:
        path = pattern.format(pid=node.pid)
        if not os.path.exists(path):
            continue
        tried.append(path)
        answer = post(node, "/storeFile", {"localFilePath": path})
        assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
        st = os.stat(path)
        link = post(node, "/linkFile", {"localFilePath": path, "size": 0, "mtime": st.st_mtime})
        assert link.status_code == 400, (path, link.status_code, link.text[:200])
    assert len(tried) >= 5
    assert kept(node.storage_dir) == before
    environ = Path(f"/proc/{node.pid}/environ").read_bytes()
    for name in kept(node.storage_dir):
        assert (node.storage_dir / name).read_bytes() != environ


def test_a_file_that_grows_while_read_keeps_nothing(node: Any, tmp_path: Path) -> None:
    growing = tmp_path / "growing.bin"
    growing.write_bytes(os.urandom(24 << 20))
    stop = threading.Event()

    def append() -> None:
        with open(growing, "ab", buffering=0) as f:
            while not stop.is_set():
                f.write(os.urandom(4096))
                time.sleep(0.0005)

    before = kept(node.storage_dir)
    writer = threading.Thread(target=append, daemon=True)
    writer.start()
    try:
        for _ in range(5):
            answer = post(node, "/storeFile", {"localFilePath": str(growing)})
            assert answer.status_code == 400, (answer.status_code, answer.text[:200])
            assert "changed while it was being read" in answer.text
    finally:
        stop.set()
        writer.join()
    assert kept(node.storage_dir) == before
