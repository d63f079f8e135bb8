"""Virtualenvs for the tools benchmarks compare with, made once under the system temp dir.

Installing a tool takes from seconds (git-annex) to over a minute (dvc), so each venv is
kept between runs, named by the running Python's version, and only rebuilt when its check
fails (a half-finished install, or a temp dir that was cleaned).
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional


def tool_venv(name: str, packages: List[str], check: str) -> Optional[Path]:
    """The venv `<tempdir>/<name>-<X.Y>` with `packages` pip-installed, or None when pip
    fails. `check` is Python code that succeeds in the venv once everything is there;
    it runs outside this checkout, so nothing here shadows what the venv installed."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    away = tempfile.gettempdir()
    venv = Path(away) / f"{name}-{version}"
    python = str(venv / "bin" / "python")
    # parallel test workers and a benchmark may ask at once: one makes it, the others wait
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if venv_passes(python, check):
            return venv
        if not venv_passes(python, "pass"):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [python, "-m", "pip", "install", "--quiet", *packages]
        if subprocess.run(pip, cwd=away).returncode != 0 or not venv_passes(python, check):
            return None
        return venv


def venv_passes(python: str, code: str) -> bool:
    if not Path(python).exists():
        return False
    probe = [python, "-c", code]
    return subprocess.run(probe, capture_output=True, cwd=tempfile.gettempdir()).returncode == 0


ORIGINAL = "kachery-client==1.2.0"
"""The original client, which the compatibility tests and the node rows run against our node."""


def original_client_venv() -> Optional[Path]:
    """The original client's venv (`kachery-compat-venv-X.Y`), shared by the compatibility
    tests (tests/original_client.py) and the node rows' "original client" baseline."""
    check = "import kachery_client, numpy; assert kachery_client.__version__ == '1.2.0'"
    return tool_venv("kachery-compat-venv", [ORIGINAL, "numpy"], check)
