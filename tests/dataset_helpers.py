"""Shared pieces of the dataset tests against real nodes: a node for a whole module, the
client environment of each backend, a sample tree and a byte-for-byte tree comparison."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import node_fixtures
from conftest import free_port, write_random_file
from node_fixtures import NodeProcess

BIG = 25_000_000
"""Over 20,000,000 bytes: the file gets a manifest, and its entry a "manifestSha1"."""


def base_env(root: Path) -> Dict[str, str]:
    """An environment of its own for a module (like `kenv`, which is per test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
    env.update(
        KACHERY_STORAGE_DIR=str(root / "storage"),
        KACHERY_CONFIG=str(root / "config" / "config.toml"),
        KACHERY_SYSTEM_CONFIG=str(root / "etc" / "config.toml"),
        KACHERY_DAEMON_PORT=str(free_port()),
        XDG_CACHE_HOME=str(root / "xdg-cache"),
    )
    return env


def start_node(root: Path, *args: str) -> NodeProcess:
    """A node with its own port and storage below `root`; the caller stops it."""
    root.mkdir(parents=True, exist_ok=True)
    env = dict(base_env(root))
    node = NodeProcess(root / "node-storage", env, ["--auth-rotate-seconds", "300", *args])
    node.start()
    return node


def start_grpc_node(root: Path) -> NodeProcess:
    grpc_port = free_port()
    node = start_node(root, "--grpc-port", str(grpc_port))
    node.grpc_port = grpc_port  # type: ignore[attr-defined]
    return node


def make_token(node: NodeProcess, scope: Optional[str] = None) -> str:
    return node_fixtures.make_token(node, f"datasets-{os.urandom(4).hex()}", scope)


def backend_env(
    backend: str, node: NodeProcess, cache: Path, token: Optional[str] = None
) -> Dict[str, str]:
    """A client of `node` through `backend`. http shares the node's storage (a user of its
    machine); remote and grpc have a cache of their own, so every byte crosses the socket."""
    env = dict(node.env, KACHERY_TRANSPORT=backend, KACHERY_DAEMON_HOST="127.0.0.1")
    env["XDG_CACHE_HOME"] = str(cache.parent / f"{cache.name}-xdg")
    if backend == "http":
        env["KACHERY_STORAGE_DIR"] = str(node.storage_dir)
    elif backend == "remote":
        env["KACHERY_STORAGE_DIR"] = str(cache)
        env["KACHERY_AUTH_TOKEN"] = token or make_token(node)
    elif backend == "grpc":
        env["KACHERY_STORAGE_DIR"] = str(cache)
        env["KACHERY_GRPC_PORT"] = str(node.grpc_port)  # type: ignore[attr-defined]
        if token is not None:
            env["KACHERY_AUTH_TOKEN"] = token
        else:
            env["KACHERY_AUTH_CODE_FILE"] = str(node.storage_dir / "client-auth")
    else:
        raise AssertionError(backend)
    return env


def make_tree(root: Path, seed: int = 0) -> Path:
    """Nested folders, an empty one, a file with a manifest, small files, odd names."""
    (root / "raw" / "deep" / "er").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "params.json").write_text(f'{{"rate": 30000, "seed": {seed}}}\n')
    (root / "notes with space.txt").write_text(f"recorded on day {seed}\n")
    (root / "résumé.txt").write_text("non-ASCII name\n")
    (root / "raw" / "zero.bin").write_bytes(b"")
    (root / "raw" / "deep" / "er" / "leaf.txt").write_text(f"a leaf {seed}\n")
    write_random_file(root / "raw" / "big.bin", BIG, seed=seed + 100)
    return root


def tree_listing(root: Path) -> List[Tuple[str, str]]:
    """(relative path, "dir" or "file") of everything below `root`, sorted."""
    found: List[Tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        found += [(str(rel / d), "dir") for d in dirnames]
        found += [(str(rel / f), "file") for f in filenames]
    return sorted(found)


def assert_same_tree(expected: Path, got: Path) -> None:
    """Same folders (empty ones too), same names, byte-identical files."""
    assert tree_listing(got) == tree_listing(expected)
    for rel, kind in tree_listing(expected):
        if kind == "file":
            assert filecmp.cmp(expected / rel, got / rel, shallow=False), rel


def objects(storage: Path) -> List[Path]:
    sha1 = storage / "sha1"
    return [p for p in sha1.rglob("*") if p.is_file()] if sha1.exists() else []


def one_error_line(result: object, code: int = 1) -> str:
    """The single `Error: ...` line of a failed CLI run (Python 3.8's warning dropped)."""
    assert result.returncode == code, result  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    if len(lines) == 3 and "Warning: " in lines[0]:
        lines = lines[2:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result
    return lines[0]
