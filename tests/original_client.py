"""The original kachery-client 1.2.0 in a virtualenv of its own, made once per Python
version under the system temp dir: the compatibility tests and the benchmarks' "original
client" row use the same one.

Made under a file lock: parallel test workers (pytest-xdist) and a benchmark may all ask
for it at once, and one `venv --clear` under another's pip would break both.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

ORIGINAL = "kachery-client==1.2.0"
AWAY = tempfile.gettempdir()
"""Run it from here: in this checkout, `python -c` would import our kachery_client."""


def original_client_venv() -> Optional[Path]:
    """The venv, made if missing or broken; None when pip cannot install the original."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    venv = Path(AWAY) / f"kachery-compat-venv-{version}"
    python = venv / "bin" / "python"
    check = [
        str(python),
        "-c",
        "import kachery_client, numpy; assert kachery_client.__version__ == '1.2.0'",
    ]
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and subprocess.run(check, capture_output=True, cwd=AWAY).returncode == 0:
            return venv
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", ORIGINAL, "numpy"]
        if subprocess.run(pip, timeout=900, cwd=AWAY).returncode != 0:
            return None
        return venv if subprocess.run(check, cwd=AWAY).returncode == 0 else None
