"""A user's mypy sees kachery's types after a real (not editable) install.

The project is built into a wheel once, installed without dependencies into a fresh venv,
and this environment's mypy checks a small user script against that venv
(`--python-executable`). Without the `py.typed` markers mypy would refuse the installed
packages as untyped, or see them as `Any`; the script's one deliberate error and its
`reveal_type`s show that the real types are read. Nothing is downloaded but, when this
environment cannot build offline, the build tools of an isolated build (build_tools.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest
from build_tools import pip_build_args
from test_layers import PRODUCT, ROOT

USER_SCRIPT = """\
import kachery_client as kc
from kachery_core.content.uri import ContentUri, parse_uri
from kachery_core.errors import KacheryError


def local_path(uri: str) -> str:
    return kc.load_file(uri)


def through(client: kc.Client, uri: ContentUri) -> str:
    return client.load_file(uri)


def explain(error: KacheryError) -> str:
    return error.message


reveal_type(kc.Client)
reveal_type(parse_uri)
reveal_type(KacheryError("x").hint)


def wrong() -> int:
    return kc.load_file("sha1://0123456789abcdef0123456789abcdef01234567")
"""
WRONG_LINE = USER_SCRIPT.splitlines().index("def wrong() -> int:") + 2


def _run(args: List[str], cwd: Path, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy (pip builds inside the source tree)."""
    root = tmp_path_factory.mktemp("typed-wheel")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PRODUCT:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = root / "dist"
    args = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
    args += [*pip_build_args(), "--no-deps", "--wheel-dir", str(out), str(source)]
    built = _run(args, root, dict(os.environ))
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("kachery_lab-*.whl")
    return found


def test_the_wheel_carries_a_marker_for_every_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"{package}/py.typed" for package in PRODUCT} <= names, sorted(names)
    assert "kachery_core/grpc_api/kachery_pb2.pyi" in names


def test_mypy_sees_the_installed_types(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, {})
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    installed = _run([*pip, "--disable-pip-version-check", "--no-deps", str(wheel)], tmp_path, env)
    assert installed.returncode == 0, installed.stderr
    where = _run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print(u.find_spec('kachery_client').origin)",
        ],
        tmp_path,
        env,
    )
    assert where.stdout.strip().startswith(str(venv)), where  # the wheel, not this checkout

    work = tmp_path / "user"
    work.mkdir()
    (work / "analysis.py").write_text(USER_SCRIPT)
    (work / "mypy.ini").write_text("[mypy]\n")  # the user's settings, not this project's
    mypy = Path(sys.executable).parent / "mypy"
    checked = _run(
        [str(mypy), "--python-executable", str(python), "--no-incremental", "analysis.py"],
        work,
        env,
    )
    out = checked.stdout
    assert "import-untyped" not in out and "missing library stubs" not in out, out
    revealed = re.findall(r'^analysis\.py:\d+: note: Revealed type is "(.*)"$', out, re.M)
    # none is Any (but `Client(**settings: Any)`, which takes any setting by keyword)
    assert len(revealed) == 3 and not any("Any" in r.split("**")[0] for r in revealed), out
    assert revealed[0].startswith("def (") and revealed[0].endswith(
        "-> kachery_client.client.Client"
    )
    assert revealed[1] in (
        "def (text: object) -> kachery_core.content.uri.ContentUri",
        "def (text: builtins.object) -> kachery_core.content.uri.ContentUri",
    ), out
    assert revealed[2] in ("str | None", "Union[builtins.str, None]"), out
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert errors == [
        f"analysis.py:{WRONG_LINE}: error: Incompatible return value type "
        '(got "str", expected "int")  [return-value]'
    ], out
    assert checked.returncode == 1, checked
