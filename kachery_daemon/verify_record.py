"""The record of the last `kachery-daemon verify` run, which the node's web pages show.

    <dir>/kachery-last-verify.json   {"started", "finished", "scope", "exitCode"}

Written whole by rename after each run (a crash leaves the previous record); the node
only reads it. `scope` is "all" or the number of URIs named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from kachery_core.atomic_file import write_atomically

FILE_NAME = "kachery-last-verify.json"


def write_verify_record(root: Path, started: float, finished: float, scope: str, code: int) -> None:
    doc = {"started": started, "finished": finished, "scope": scope, "exitCode": code}
    write_atomically(Path(root) / FILE_NAME, json.dumps(doc).encode(), 0o600)


def read_verify_record(root: Path) -> Optional[Dict[str, Any]]:
    """The last run's record, None when there was none (or it cannot be read)."""
    try:
        doc = json.loads((Path(root) / FILE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
