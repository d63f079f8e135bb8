"""Broken third-party plugins, installed for real (a dist-info on PYTHONPATH), never break kachery.

Each case installs one or more tiny distributions with a `kachery.plugins` entry point and
runs the real CLI: the broken plugin is named, with its reason, by `backends`; every other
backend, `--help` and `version` keep working.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Dict

import pytest

GOOD_HOOK = """
from kachery_core.hookspecs import hookimpl
from kachery_core.plugins import BackendSpec

@hookimpl
def kachery_register_backends():
    return [BackendSpec("{backend}", "kachery_transports.local:LocalTransport", "a test backend")]
"""

CASES: Dict[str, str] = {
    "import_fails": "import kachery_no_such_dependency\n",
    "hook_raises": """
from kachery_core.hookspecs import hookimpl

@hookimpl
def kachery_register_backends():
    raise RuntimeError("the plugin's own bug")
""",
    "returns_junk": """
from kachery_core.hookspecs import hookimpl

@hookimpl
def kachery_register_backends():
    return ["not a spec"]
""",
}

REASONS = {
    "import_fails": "import failed: ModuleNotFoundError",
    "hook_raises": "RuntimeError: the plugin's own bug",
    "returns_junk": "returned 'not a spec', not a BackendSpec",
}


def install(site: Path, dist: str, module: str, source: str, version: str = "1.0") -> None:
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[kachery.plugins]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_plugin_is_named_and_harmless(case: str, cli, kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, f"kachery-{case.replace('_', '-')}", f"plug_{case}", CASES[case])
    install(site, "kachery-fine", "plug_fine", GOOD_HOOK.format(backend="fine"), "2.5")
    env = dict(kenv, PYTHONPATH=str(site))

    listed = cli("backends", env=env)
    assert listed.returncode == 0, listed
    line = next(x for x in listed.stdout.splitlines() if x.startswith(f"plug_{case}"))
    assert "BROKEN" in line and REASONS[case] in line
    fine = next(x for x in listed.stdout.splitlines() if x.startswith("fine "))
    assert "kachery-fine 2.5" in fine
    local = next(x for x in listed.stdout.splitlines() if x.startswith("local "))
    assert "kachery-client" in local

    for args in (["--help"], ["version"], ["--version"]):
        shown = cli(*args, env=env)
        assert shown.returncode == 0 and shown.stderr == "", (args, shown)

    src = tmp_path / "data.txt"
    src.write_text("still works")
    stored = cli("store-file", str(src), env=env)
    assert stored.returncode == 0, stored
    assert stored.stdout.strip() == f"sha1://{hashlib.sha1(b'still works').hexdigest()}/data.txt"
    assert (
        cli("--transport", "fine", "cat-file", stored.stdout.strip(), env=env).stdout
        == "still works"
    )


def test_two_plugins_claiming_one_name(cli, kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "kachery-twin-a", "twin_a", GOOD_HOOK.format(backend="twin"))
    install(site, "kachery-twin-b", "twin_b", GOOD_HOOK.format(backend="twin"))
    env = dict(kenv, PYTHONPATH=str(site))
    listed = cli("backends", env=env)
    line = next(x for x in listed.stdout.splitlines() if x.startswith("twin "))
    assert "BROKEN" in line and "kachery-twin-a" in line and "kachery-twin-b" in line
    used = cli("--transport", "twin", "info", env=env)
    assert used.returncode == 1
    assert used.stderr.startswith("Error: backend 'twin' is broken: claimed by both")
    assert used.stderr.count("\n") == 1


SELECT_RAISES = (
    GOOD_HOOK.format(backend="selector")
    + """
@hookimpl
def kachery_select_backend(config):
    raise ValueError("cannot decide")
"""
)


def test_a_selection_hook_that_raises_falls_back(cli, kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "kachery-selector", "plug_selector", SELECT_RAISES)
    info = cli("info", env=dict(kenv, PYTHONPATH=str(site)))
    assert info.returncode == 0, info
    assert "backend           local" in info.stdout
    assert info.stderr == (
        "Warning: plugin 'plug_selector' ignored: "
        "kachery_select_backend raised ValueError('cannot decide')\n"
    )
