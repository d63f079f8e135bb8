"""A node serving gRPC too, and a grpc client's environment for it, for the tests of the
grpc backend (tests/transports/test_grpc_*.py). Registered in conftest.py's
`pytest_plugins`, like node_fixtures; the helpers are imported by name."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
from conftest import free_port
from node_fixtures import NodeProcess


@pytest.fixture
def grpc_node(make_node) -> NodeProcess:
    port = free_port()
    node = make_node("--grpc-port", str(port), "--auth-rotate-seconds", "300")
    node.grpc_port = port  # type: ignore[attr-defined]
    return node


@pytest.fixture
def genv(kenv: Dict[str, str], grpc_node: NodeProcess, tmp_path: Path) -> Dict[str, str]:
    """The client's environment: the grpc backend, its own cache, the node's auth file."""
    return dict(
        kenv,
        KACHERY_TRANSPORT="grpc",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_GRPC_PORT=str(grpc_node.grpc_port),  # type: ignore[attr-defined]
        KACHERY_STORAGE_DIR=str(tmp_path / "client-cache"),
        KACHERY_AUTH_CODE_FILE=str(grpc_node.storage_dir / "client-auth"),
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


def objects_below(root: Path) -> list:
    return [p for p in (root / "sha1").rglob("*") if p.is_file()] if root.exists() else []
