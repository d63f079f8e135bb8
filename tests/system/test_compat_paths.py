"""The old plugin-facing import paths: each is the moved module itself, for one release.

Plugins written against the flat core (`kachery_core.hookspecs`, `kachery_core.transport`,
...) keep working: importing an old path warns once and hands back the module at its new
home, so identity, `isinstance` and monkeypatching all behave as before. The list is fixed
here (as a public API listing is), so that adding or dropping an alias is a visible change.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest
from test_layers import COMPAT_SHIMS, ROOT

EXPECTED = COMPAT_SHIMS  # the one list, in test_layers.py: the layer rules exempt exactly these


def test_the_alias_list_is_what_this_release_keeps() -> None:
    """Adding or dropping an alias is a visible change of this list."""
    assert sorted(EXPECTED) == [
        "kachery_core.config",
        "kachery_core.hashing",
        "kachery_core.hookspecs",
        "kachery_core.layout",
        "kachery_core.local_storage",
        "kachery_core.manifest",
        "kachery_core.plugins",
        "kachery_core.storage",
        "kachery_core.testing",
        "kachery_core.transport",
        "kachery_core.uri",
        "kachery_core.verified_read",
    ]


@pytest.mark.parametrize("old, new", sorted(EXPECTED.items()))
def test_old_path_is_the_new_module(old: str, new: str) -> None:
    # Fresh interpreter: in this one another test may have imported the alias already.
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        "assert old is new, (old, new)\n"
        "assert any(issubclass(w.category, DeprecationWarning)"
        f" and {new!r} in str(w.message) for w in caught), caught\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_names_plugins_import_from_old_paths_still_resolve() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        hookspecs = importlib.import_module("kachery_core.hookspecs")
        transport = importlib.import_module("kachery_core.transport")
        testing = importlib.import_module("kachery_core.testing")
    from kachery_client.testing import TransportContract
    from kachery_core.backend.base import DaemonTransport
    from kachery_core.backend.hookspecs import hookimpl

    assert hookspecs.hookimpl is hookimpl
    assert transport.DaemonTransport is DaemonTransport
    assert testing.TransportContract is TransportContract


def test_each_alias_is_a_short_module_of_the_same_shape() -> None:
    for old, new in EXPECTED.items():
        path = ROOT / (old.replace(".", "/") + ".py")
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= 20, path
        assert f'importlib.import_module("{new}")' in text, path
        assert f"from {new} import *" in text, path  # what a type checker sees


def test_the_example_plugin_uses_the_new_paths() -> None:
    example = ROOT / "examples" / "kachery-mirror"
    for path in example.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for old in EXPECTED:
            assert f"{old} " not in text and f"{old}\n" not in text, (path, old)
