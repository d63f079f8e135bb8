"""Lab deployment configs: the system file, the user file, named profiles, and precedence."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from kachery_core.errors import ConfigError
from kachery_core.settings.config import resolve_config

# The layers a value can come from, highest precedence first.
LAYERS = ["flag", "env", "profile", "user", "system", "default"]


def _write_configs(kenv: Dict[str, str], system: str, user: str) -> None:
    for key, text in (("KACHERY_SYSTEM_CONFIG", system), ("KACHERY_CONFIG", user)):
        path = Path(kenv[key])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _setup(kenv: Dict[str, str], present: List[str]) -> tuple[Dict[str, str], Dict[str, object]]:
    """Put a distinct daemon_port in each present layer; return (env, explicit)."""
    ports = {layer: 21000 + i for i, layer in enumerate(LAYERS)}
    system = f"daemon_port = {ports['system']}\n" if "system" in present else ""
    user = f"daemon_port = {ports['user']}\n" if "user" in present else ""
    user += 'profile = "lab"\n[profiles.lab]\n'
    if "profile" in present:
        user += f"daemon_port = {ports['profile']}\n"
    _write_configs(kenv, system, user)
    env = dict(kenv)
    env.pop("KACHERY_DAEMON_PORT")
    if "env" in present:
        env["KACHERY_DAEMON_PORT"] = str(ports["env"])
    explicit: Dict[str, object] = {"daemon_port": ports["flag"]} if "flag" in present else {}
    return env, explicit


@pytest.mark.parametrize(
    "present",
    [list(combo) for n in range(len(LAYERS)) for combo in itertools.combinations(LAYERS[:-1], n)],
    ids=lambda combo: "+".join(combo) or "nothing",
)
def test_precedence_table(kenv, present: List[str]) -> None:
    env, explicit = _setup(kenv, present)
    config = resolve_config(explicit, env=env)
    winner = next((layer for layer in LAYERS if layer in present), "default")
    expected_port = 20431 if winner == "default" else 21000 + LAYERS.index(winner)
    assert config.daemon_port == expected_port
    source = config.source("daemon_port")
    expected_source = {
        "flag": "command line",
        "env": "environment KACHERY_DAEMON_PORT",
        "profile": f"profile lab in {kenv['KACHERY_CONFIG']}",
        "user": f"config file {kenv['KACHERY_CONFIG']}",
        "system": f"system config file {kenv['KACHERY_SYSTEM_CONFIG']}",
        "default": "default",
    }[winner]
    assert source == expected_source


def test_profile_chosen_by_flag_env_or_file(cli, kenv, tmp_path: Path) -> None:
    system = """
profile = "site"
[profiles.site]
storage_dir = "/srv/site-storage"
daemon_host = "127.0.0.5"
[profiles.other]
storage_dir = "/srv/other-storage"
"""
    user = """
[profiles.other]
daemon_port = 23001
[profiles.mine]
storage_dir = "/home/me/mine"
"""
    _write_configs(kenv, system, user)
    env = {k: v for k, v in kenv.items() if k not in ("KACHERY_STORAGE_DIR", "KACHERY_DAEMON_PORT")}
    shown = cli("config", env=env)
    assert shown.returncode == 0, shown
    assert "/srv/site-storage" in shown.stdout
    assert f"[profile site in {kenv['KACHERY_SYSTEM_CONFIG']}" in shown.stdout
    assert f"# system config file: {kenv['KACHERY_SYSTEM_CONFIG']}" in shown.stdout

    by_env = cli("config", env=dict(env, KACHERY_PROFILE="mine"))
    assert "/home/me/mine" in by_env.stdout and "/srv/site-storage" not in by_env.stdout

    # the flag beats the environment; the same profile in both files merges, user keys win
    by_flag = cli("--profile", "other", "config", env=dict(env, KACHERY_PROFILE="mine"))
    lines = {line.split()[0]: line for line in by_flag.stdout.splitlines() if line[:1] != "#"}
    assert "/srv/other-storage" in lines["storage_dir"]
    assert f"profile other in {kenv['KACHERY_SYSTEM_CONFIG']}" in lines["storage_dir"]
    assert "command line" in lines["profile"]
    assert "23001" in lines["daemon_port"]
    assert "127.0.0.5" not in lines["daemon_host"]  # only the chosen profile applies


def test_the_profile_selects_the_backend(cli, kenv, tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    offline.mkdir()
    _write_configs(
        kenv,
        "",
        f'[profiles.laptop]\ntransport = "offline"\noffline_storage_dir = "{offline}"\n',
    )
    info = cli("--profile", "laptop", "info")
    assert info.returncode == 0, info
    assert "offline" in info.stdout
    plain = cli("info")
    assert "backend           local" in plain.stdout


def test_unknown_profile_is_a_clear_error(cli, kenv) -> None:
    _write_configs(kenv, "[profiles.lab]\n", "[profiles.home]\n")
    result = cli("--profile", "labb", "info")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "unknown profile 'labb'" in result.stderr
    assert "--profile" in result.stderr and "home, lab" in result.stderr


@pytest.mark.parametrize(
    "system, user, message",
    [
        ("", "[profiles.lab]\nprofile = 'x'\n", "unknown setting 'profile' in [profiles.lab]"),
        ("", "[profiles.lab]\ndaemon_prot = 1\n", "unknown setting 'daemon_prot'"),
        ("[profiles.lab]\ndaemon_port = 'abc'\n", "", "invalid value 'abc' for daemon_port"),
        ("daemon_port = [", "", "is not valid TOML"),
        ("", "profiles = 3\n", "[profiles] in"),
        ("", "[plugins]\nmirror = 1\n", "plugins in"),
    ],
)
def test_bad_config_files_name_the_file(kenv, system: str, user: str, message: str) -> None:
    _write_configs(kenv, system, user)
    with pytest.raises(ConfigError) as caught:
        resolve_config()
    assert message in str(caught.value)
    bad_file = kenv["KACHERY_SYSTEM_CONFIG"] if system else kenv["KACHERY_CONFIG"]
    assert bad_file in str(caught.value)


def test_plugin_settings_merge_by_layer(kenv) -> None:
    _write_configs(
        kenv,
        '[plugins.mirror]\nurl = "http://system"\ncache = "/sys"\n',
        '[plugins.mirror]\nurl = "http://user"\n[profiles.lab.plugins.mirror]\ncache = "/lab"\n',
    )
    assert resolve_config().plugin_settings("mirror") == {"url": "http://user", "cache": "/sys"}
    lab = resolve_config({"profile": "lab"})
    assert lab.plugin_settings("mirror") == {"url": "http://user", "cache": "/lab"}
    assert lab.plugin_settings("absent") == {}


# -- one word, "backend"; "transport" is another spelling --------------------------------


@pytest.mark.parametrize(
    "env, winner, source",
    [
        ({"KACHERY_BACKEND": "offline"}, "offline", "environment KACHERY_BACKEND"),
        ({"KACHERY_TRANSPORT": "remote"}, "remote", "environment KACHERY_TRANSPORT"),
        (
            {"KACHERY_BACKEND": "offline", "KACHERY_TRANSPORT": "remote"},
            "offline",
            "environment KACHERY_BACKEND",
        ),
    ],
)
def test_backend_from_either_variable(kenv, env: Dict[str, str], winner: str, source) -> None:
    config = resolve_config(env=dict(kenv, **env))
    assert config.backend == winner and config.transport == winner
    assert config.source("backend") == config.source("transport") == source
    assert config.is_set("backend") and config.is_set("transport")


@pytest.mark.parametrize("key", ["backend", "transport"])
def test_backend_from_either_config_key(kenv, key: str) -> None:
    _write_configs(kenv, "", f'{key} = "offline"\n[profiles.lab]\n{key} = "remote"\n')
    config = resolve_config()
    assert config.backend == "offline" and config.get("transport") == "offline"
    assert config.source("transport") == f"config file {kenv['KACHERY_CONFIG']}"
    assert resolve_config({"profile": "lab"}).backend == "remote"


@pytest.mark.parametrize(
    "text",
    [
        'backend = "local"\ntransport = "local"\n',
        '[profiles.lab]\ntransport = "a"\nbackend = "b"\n',
    ],
)
def test_both_spellings_in_one_table_is_an_error_naming_the_file(kenv, text: str) -> None:
    _write_configs(kenv, "", text)
    with pytest.raises(ConfigError) as caught:
        resolve_config()
    assert "both 'backend' and 'transport'" in str(caught.value)
    assert kenv["KACHERY_CONFIG"] in str(caught.value)


def test_explicit_backend_either_spelling(kenv) -> None:
    assert resolve_config({"transport": "offline"}).backend == "offline"
    assert resolve_config({"backend": "offline"}).transport == "offline"
    assert resolve_config({"backend": None, "transport": "remote"}).backend == "remote"
    with pytest.raises(ConfigError, match="both 'backend' and 'transport'"):
        resolve_config({"backend": "offline", "transport": "remote"})
    replaced = resolve_config().replace(transport="local")
    assert replaced.backend == "local" and replaced.source("backend") == "derived"


def test_is_set_means_not_the_default(kenv) -> None:
    config = resolve_config({"connect_timeout": 2})
    assert config.is_set("connect_timeout") and config.connect_timeout == 2.0
    assert config.is_set("storage_dir")  # KACHERY_STORAGE_DIR in kenv
    assert not config.is_set("read_timeout") and not config.is_set("backend")
    assert config.source("read_timeout") == "default"


def test_every_setting_is_a_typed_read_only_attribute(kenv) -> None:
    """Each attribute declares the type its parser returns, Optional when unset by default."""
    import typing

    from kachery_core.settings.config import SETTINGS, Config

    config = resolve_config()
    for key, setting in SETTINGS.items():
        declared = typing.get_args(setting.__orig_class__)[0]  # Setting[<declared>]
        returned = typing.get_type_hints(setting.parse)["return"]
        expected = returned if setting.default is not None else Optional[returned]
        assert declared == expected, key
        value = config.get(key)
        assert value is None or isinstance(value, returned), key
        if key != "auth_token":  # the attribute is the token, read from auth_token_file too
            assert getattr(config, key) == value
            with pytest.raises(AttributeError):
                setattr(config, key, value)
    assert "transport" not in SETTINGS and isinstance(Config.backend.env, str)
