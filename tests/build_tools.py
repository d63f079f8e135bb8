"""How the tests build a wheel with pip: offline when this environment has the build tools.

Used by the fixtures that install a package as a user would (mirror_fixtures.py, the example
plugin) and by tests/system/test_typed_install.py (this project's own wheel).
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import List, Tuple


def _version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def can_build_offline() -> bool:
    """True when this interpreter can build a setuptools project without fetching tools."""
    try:
        setuptools = _version_tuple(metadata.version("setuptools"))
    except metadata.PackageNotFoundError:
        return False
    if setuptools >= (70, 1):  # builds wheels by itself
        return True
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return False
    return setuptools >= (61, 0)


def pip_build_args() -> List[str]:
    """pip options for a build: no isolation and no index when the tools are here; else
    none, and pip fetches setuptools for an isolated build from the package index, as the
    project's own `pip install -e .` in scripts/test.sh does."""
    return ["--no-build-isolation", "--no-index"] if can_build_offline() else []
