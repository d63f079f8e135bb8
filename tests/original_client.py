"""The original kachery-client 1.2.0 in a virtualenv of its own, made once per Python
version under the system temp dir: the compatibility tests use the same one as the
benchmarks' "original client" row (benchmarks/node_rows.py), made the same way
(benchmarks/tool_venv.py, under a file lock: parallel test workers may ask at once).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Optional

ORIGINAL = "kachery-client==1.2.0"
AWAY = tempfile.gettempdir()
"""Run it from here: in this checkout, `python -c` would import our kachery_client."""


def original_client_venv() -> Optional[Path]:
    """The venv, made if missing or broken; None when pip cannot install the original."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from tool_venv import tool_venv
    finally:
        sys.path.pop(0)
    check = "import kachery_client, numpy; assert kachery_client.__version__ == '1.2.0'"
    return tool_venv("kachery-compat-venv", [ORIGINAL, "numpy"], check)
