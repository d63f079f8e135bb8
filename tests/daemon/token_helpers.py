"""Token commands for the credential tests (test_scopes.py, test_tokens.py): run
`kachery-daemon`, make a token of a scope for a node."""

from __future__ import annotations

import subprocess
from typing import Dict

from conftest import command
from node_fixtures import make_token  # noqa: F401 - the tests of this folder import it here


def daemon(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [command("kachery-daemon"), *args], capture_output=True, text=True, env=env, timeout=60
    )
