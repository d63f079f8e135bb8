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
from kachery_core.backend.hookspecs import hookimpl
from kachery_client.backends.registry import BackendSpec

@hookimpl
def kachery_register_backends():
    return [BackendSpec("{backend}", "kachery_transports.local:LocalTransport", "a test backend")]
"""

CASES: Dict[str, str] = {
    "import_fails": "import kachery_no_such_dependency\n",
    "hook_raises": """
from kachery_core.backend.hookspecs import hookimpl

@hookimpl
def kachery_register_backends():
    raise RuntimeError("the plugin's own bug")
""",
    "returns_junk": """
from kachery_core.backend.hookspecs import hookimpl

@hookimpl
def kachery_register_backends():
    return ["not a spec"]
""",
    "misspelt_hook": """
from kachery_core.backend.hookspecs import hookimpl

@hookimpl
def kachery_register_backend():
    return []
""",
    "wrapper_not_generator": """
from kachery_core.backend.hookspecs import hookimpl

@hookimpl(wrapper=True)
def kachery_register_backends():
    return []
""",
}

REASONS = {
    "import_fails": "import failed: ModuleNotFoundError",
    "hook_raises": "RuntimeError: the plugin's own bug",
    "returns_junk": "returned 'not a spec', not a BackendSpec",
    "misspelt_hook": "kachery_register_backend is not a kachery hook",
    "wrapper_not_generator": "PluginValidationError",
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
    assert "kachery-lab" in local

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


def test_debug_shows_a_broken_plugins_own_traceback(cli, kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "kachery-import-fails", "plug_import_fails", CASES["import_fails"])
    install(site, "kachery-hook-raises", "plug_hook_raises", CASES["hook_raises"])
    env = dict(kenv, PYTHONPATH=str(site))

    plain = cli("backends", env=env)
    assert plain.returncode == 0 and plain.stderr == "", plain
    for args in (["backends", "--debug"], ["--debug", "backends"]):
        shown = cli(*args, env=env)
        assert shown.returncode == 0, shown
        assert shown.stdout == plain.stdout
        assert "plug_import_fails is broken because:\nTraceback" in shown.stderr
        assert "import kachery_no_such_dependency" in shown.stderr  # the plugin's own line
        assert "plug_hook_raises is broken because:\nTraceback" in shown.stderr
        assert 'raise RuntimeError("the plugin\'s own bug")' in shown.stderr

    used = cli("--transport", "plug_hook_raises", "info", env=env)
    assert used.returncode == 1
    assert used.stderr == (
        "Error: backend 'plug_hook_raises' is broken: "
        "kachery-hook-raises: RuntimeError: the plugin's own bug\n"
    )
    debugged = cli("--debug", "--transport", "plug_hook_raises", "info", env=env)
    assert debugged.returncode == 1
    assert "the plugin's own error:\nTraceback" in debugged.stderr
    assert 'raise RuntimeError("the plugin\'s own bug")' in debugged.stderr
    assert debugged.stderr.endswith(used.stderr)


WRAPPING = """
from kachery_core.backend.hookspecs import BackendSpec, hookimpl

LOCAL = "kachery_transports.local:LocalTransport"

@hookimpl
def kachery_register_backends():
    return [BackendSpec("wrapped", LOCAL, "a plain implementation")]

@hookimpl(hookwrapper=True, specname="kachery_register_backends")
def add_one_more():
    outcome = yield
    extra = BackendSpec("wrapped-extra", LOCAL, "added by an old-style hookwrapper")
    outcome.force_result(outcome.get_result() + [[extra]])

@hookimpl(wrapper=True)
def kachery_select_backend(config):
    answer = yield
    return answer or "wrapped"
"""


def test_wrappers_are_called_through_pluggy(cli, kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "kachery-wrapping", "plug_wrapping", WRAPPING)
    env = dict(kenv, PYTHONPATH=str(site))

    listed = cli("backends", env=env)
    assert listed.returncode == 0 and "BROKEN" not in listed.stdout, listed
    names = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "kachery-wrapping 1.0" in names["wrapped"]
    assert "added by an old-style hookwrapper" in names["wrapped-extra"]

    info = cli("info", env=env)
    assert info.returncode == 0 and info.stderr == "", info
    assert "backend           wrapped\n" in info.stdout
    assert "chosen by plugin 'plug_wrapping'" in info.stdout


def _selector(answer: str, marker: str = "") -> str:
    return f"""
from kachery_core.backend.hookspecs import BackendSpec, hookimpl

@hookimpl
def kachery_register_backends():
    return [BackendSpec("{answer}", "kachery_transports.local:LocalTransport", "a test backend")]

@hookimpl({marker})
def kachery_select_backend(config):
    return "{answer}"
"""


@pytest.mark.parametrize("first", ["sel_a", "sel_b"])
def test_tryfirst_decides_between_two_selectors(first: str, cli, kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    for name in ("sel_a", "sel_b"):
        marker = "tryfirst=True" if name == first else ""
        install(site, f"kachery-{name.replace('_', '-')}", f"plug_{name}", _selector(name, marker))
    info = cli("info", env=dict(kenv, PYTHONPATH=str(site)))
    assert info.returncode == 0 and info.stderr == "", info
    assert f"backend           {first}\n" in info.stdout
    assert f"chosen by plugin 'plug_{first}'" in info.stdout


def test_a_plugin_cannot_take_a_builtin_name(cli, kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(
        site,
        "kachery-usurper",
        "plug_usurper",
        """
from kachery_core.backend.hookspecs import BackendSpec, hookimpl

@hookimpl
def kachery_register_backends():
    return [
        BackendSpec("local", "plug_usurper:Nothing", "not kachery's local"),
        BackendSpec("usurper", "kachery_transports.local:LocalTransport", "its own name"),
    ]
""",
        "3.1",
    )
    env = dict(kenv, PYTHONPATH=str(site))
    listed = cli("backends", env=env)
    assert listed.returncode == 0, listed
    lines = listed.stdout.splitlines()
    local = [x for x in lines if x.startswith("local ")]
    assert len(local) == 2
    assert "kachery-lab" in local[0] and "embedded" in local[0]
    assert "REFUSED" in local[1] and "kachery-usurper 3.1" in local[1]
    assert "the built-in one is used" in local[1]
    assert "kachery-usurper 3.1" in next(x for x in lines if x.startswith("usurper "))

    src = tmp_path / "data.txt"
    src.write_text("built-in")
    for args in (["store-file", str(src)], ["--transport", "local", "store-file", str(src)]):
        stored = cli(*args, env=env)
        assert stored.returncode == 0 and stored.stderr == "", stored
    info = cli("--transport", "local", "info", env=env)
    assert "backend           local\n" in info.stdout


def test_three_plugins_claiming_one_name_are_all_named(cli, kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    for letter in "abc":
        install(
            site, f"kachery-triple-{letter}", f"triple_{letter}", GOOD_HOOK.format(backend="triple")
        )
    listed = cli("backends", env=dict(kenv, PYTHONPATH=str(site)))
    line = next(x for x in listed.stdout.splitlines() if x.startswith("triple "))
    assert "BROKEN: claimed by both" in line
    assert all(f"kachery-triple-{letter}" in line for letter in "abc")


SELECT_UNKNOWN = """
from kachery_core.backend.hookspecs import hookimpl

@hookimpl(tryfirst=True)
def kachery_select_backend(config):
    return "nosuch"
"""


def test_an_unknown_selection_answer_is_ignored_with_one_warning(cli, kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "kachery-unknown", "plug_unknown", SELECT_UNKNOWN)
    env = dict(kenv, PYTHONPATH=str(site))
    warning = (
        "Warning: plugin 'plug_unknown': kachery_select_backend answered 'nosuch', which is "
        "not an installed backend (see `kachery-client backends`); answer ignored\n"
    )
    info = cli("info", env=env)
    assert info.returncode == 0, info
    assert "backend           local\n" in info.stdout
    assert info.stderr == warning

    # the next plugin is still asked
    install(site, "kachery-sel-b", "plug_sel_b", _selector("sel_b"))
    info = cli("info", env=env)
    assert info.returncode == 0, info
    assert "backend           sel_b\n" in info.stdout
    assert info.stderr == warning


def test_a_raising_selection_hook_shows_its_traceback_under_debug(
    cli, kenv, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    install(site, "kachery-selector", "plug_selector", SELECT_RAISES)
    info = cli("--debug", "info", env=dict(kenv, PYTHONPATH=str(site)))
    assert info.returncode == 0, info
    first, rest = info.stderr.split("\n", 1)
    assert first == (
        "Warning: plugin 'plug_selector' ignored: "
        "kachery_select_backend raised ValueError('cannot decide')"
    )
    assert rest.startswith("Traceback") and 'raise ValueError("cannot decide")' in rest


HIGHER_LAYERS = ("kachery_transports", "kachery_cli", "kachery_client", "kachery_daemon")


def test_core_never_imports_a_higher_layer() -> None:
    """kachery_core is the bottom layer: built-in plugins are imported by name, not statement.

    The old import paths kept for one release (tests/system/test_compat_paths.py) are
    aliases of modules that moved up to kachery_client, not imports the core runs: they are
    left out.
    """
    import ast

    core = Path(__file__).resolve().parents[2] / "kachery_core"
    offences = []
    for path in sorted(core.rglob("*.py")):
        if path.read_text().startswith('"""Moved to `'):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offences += [
                f"{path.name}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in HIGHER_LAYERS
            ]
    assert offences == []
