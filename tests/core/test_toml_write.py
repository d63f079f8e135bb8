"""The config-file writer: any value written is read back identical, and nothing else moves."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kachery_core.errors import ConfigError
from kachery_core.settings.config import resolve_config, set_config_file_value
from kachery_core.settings.toml import basic_string, set_top_level_string

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# Any text TOML can hold: every code point but surrogates (which UTF-8 cannot encode).
any_text = st.text(st.characters(blacklist_categories=("Cs",)))
keys = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
scalars = st.one_of(any_text, st.integers(-(2**63), 2**63 - 1), st.booleans())


def _toml(table: Dict[str, Any]) -> str:
    """A small TOML writer for the test's own fixtures (plain keys, one level of tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v) if isinstance(v, int) else basic_string(v)

    lines = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for name, sub in table.items():
        if isinstance(sub, dict):
            lines.append(f"[{name}]")
            lines.extend(f"{k} = {value(v)}" for k, v in sub.items())
    return "\n".join(lines) + "\n"


@given(any_text)
def test_basic_string_reads_back_identical(value: str) -> None:
    assert tomllib.loads(f"v = {basic_string(value)}")["v"] == value


@given(
    value=any_text,
    top=st.dictionaries(keys, scalars, max_size=4),
    tables=st.dictionaries(keys, st.dictionaries(keys, scalars, max_size=3), max_size=3),
    old=st.one_of(st.none(), any_text),
)
def test_setting_a_key_keeps_every_other_key_and_table(
    value: str, top: Dict[str, Any], tables: Dict[str, Any], old: Any
) -> None:
    before: Dict[str, Any] = {
        k: v for k, v in top.items() if k not in tables and k != "storage_dir"
    }
    if old is not None:
        before["storage_dir"] = old
    before.update({k: v for k, v in tables.items() if k != "storage_dir"})
    text = set_top_level_string(_toml(before), "storage_dir", value)
    after = tomllib.loads(text)
    assert after == dict(before, storage_dir=value)


def test_windows_path_is_written_verbatim(kenv) -> None:
    path = Path(kenv["KACHERY_CONFIG"])
    path.parent.mkdir(parents=True)
    path.write_text('# my settings\ndaemon_port = 23000\n\n[profiles.lab]\nstorage_dir = "/lab"\n')
    set_config_file_value(path, "storage_dir", r"C:\tmp\new")
    set_config_file_value(path, "storage_dir", 'D:\\x "quoted"\\')
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data["storage_dir"] == 'D:\\x "quoted"\\'
    assert data["daemon_port"] == 23000 and data["profiles"] == {"lab": {"storage_dir": "/lab"}}
    assert "\n# my settings\n" in path.read_text()  # comments survive
    env = {k: v for k, v in kenv.items() if k != "KACHERY_STORAGE_DIR"}
    assert resolve_config(env=env).storage_dir == Path('D:\\x "quoted"\\').absolute()
    assert resolve_config({"profile": "lab"}, env=env).storage_dir == Path("/lab")


def test_writing_backend_replaces_the_old_spelling(kenv) -> None:
    path = Path(kenv["KACHERY_CONFIG"])
    path.parent.mkdir(parents=True)
    path.write_text('transport = "offline"\n[profiles.lab]\ntransport = "remote"\n')
    set_config_file_value(path, "backend", "local")
    assert tomllib.loads(path.read_text()) == {
        "backend": "local",
        "profiles": {"lab": {"transport": "remote"}},
    }


def test_an_edit_that_would_change_other_settings_is_refused(kenv) -> None:
    path = Path(kenv["KACHERY_CONFIG"])
    path.parent.mkdir(parents=True)
    # A multi-line string whose second line looks like the key: a line-based edit would
    # break it, so the file is left as it was.
    original = 'channel = """\nstorage_dir = "x"\n"""\n'
    path.write_text(original)
    with pytest.raises(ConfigError, match="cannot update"):
        set_config_file_value(path, "storage_dir", "/new")
    assert path.read_text() == original
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]


def _home_expands(value: str) -> bool:
    """False for `~name/...` naming a user this machine does not know."""
    try:
        Path(os.path.expandvars(value)).expanduser()
    except RuntimeError:
        return False
    return True


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=any_text.filter(lambda v: v != ""))
@example(value="~no-such-user-here/data")  # a path no home directory expands: refused
def test_config_file_round_trip(kenv, value: str) -> None:
    path = Path(kenv["KACHERY_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    before = 'daemon_port = 23000\n[plugins.mirror]\nurl = "http://x"\n'
    path.write_text(before)
    if not _home_expands(value):
        with pytest.raises(ValueError, match="names no home directory"):
            set_config_file_value(path, "storage_dir", value)
        assert path.read_text() == before
        return
    set_config_file_value(path, "storage_dir", value)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data == {
        "storage_dir": value,
        "daemon_port": 23000,
        "plugins": {"mirror": {"url": "http://x"}},
    }
