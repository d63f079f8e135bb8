"""The folder helpers of the CLI folder tests (test_cli_datasets*.py): a sample tree,
what a storage directory holds, and the directory object's hash computed independently."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List

TREE = {
    "a.txt": b"alpha\n",
    "sub/b.bin": bytes(range(256)) * 40,
    "sub/deeper/c.json": b'{"c": 3}',
    "z.dat": b"",
}


def write_tree(root: Path, files: Dict[str, bytes] = TREE, order: List[str] = None) -> Path:
    for rel in order or list(files):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(files[rel])
    return root


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def object_names(storage_dir: Path) -> List[str]:
    """Every object (and link record) in a storage directory."""
    top = storage_dir / "sha1"
    return sorted(p.name for p in top.rglob("*") if p.is_file()) if top.is_dir() else []


def storage_of(kenv: dict) -> Path:
    return Path(kenv["KACHERY_STORAGE_DIR"])


def files_below(root: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def expected_dir_sha1(files: Dict[str, bytes], empty_dirs: List[str] = ()) -> str:
    """The canonical directory object, built here independently of kachery's code."""
    doc: dict = {"dirs": {}, "files": {}}
    for rel in empty_dirs:
        node = doc
        for name in rel.split("/"):
            node = node["dirs"].setdefault(name, {"dirs": {}, "files": {}})
    for rel, data in files.items():
        *dirs, name = rel.split("/")
        node = doc
        for d in dirs:
            node = node["dirs"].setdefault(d, {"dirs": {}, "files": {}})
        node["files"][name] = {"sha1": sha1_of(data), "size": len(data)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha1_of(text.encode("utf-8"))


def store_folder(cli, root: Path, *extra: str) -> str:
    result = cli("store-file", "-r", str(root), *extra)
    assert result.returncode == 0, result
    return result.stdout.strip()
