"""The original kachery-client 1.2.0 for the compatibility tests: the same venv as the
benchmarks' "original client" row, made by the same function (benchmarks/tool_venv.py,
under a file lock, since parallel test workers may ask for it at once).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
try:
    from tool_venv import ORIGINAL, original_client_venv
finally:
    sys.path.pop(0)

AWAY = tempfile.gettempdir()
"""Run it from here: in this checkout, `python -c` would import our kachery_client."""

__all__ = ["AWAY", "ORIGINAL", "original_client_venv"]
