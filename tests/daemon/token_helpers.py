"""Token commands for the credential tests (test_scopes.py, test_tokens.py): run
`kachery-daemon`, make a token of a scope for a node."""

from __future__ import annotations

import subprocess
from typing import Dict, Optional

from conftest import command
from node_fixtures import NodeProcess


def daemon(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [command("kachery-daemon"), *args], capture_output=True, text=True, env=env, timeout=60
    )


def make_token(node: NodeProcess, label: str, scope: Optional[str] = None) -> str:
    extra = ["--scope", scope] if scope else []
    made = daemon(
        "token",
        "create",
        "--label",
        label,
        *extra,
        "--storage-dir",
        str(node.storage_dir),
        env=node.env,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()
