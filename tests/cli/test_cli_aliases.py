"""The short commands (`kachery-store` and friends) take every global option, anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from kachery_cli.aliases import alias_command
from kachery_cli.main import cli as client_group
from kachery_cli.main import load_command

ALIASES = {
    "kachery-cat": "cat-file",
    "kachery-load": "load-file",
    "kachery-store": "store-file",
    "kachery-link": "link-file",
}


@pytest.mark.parametrize("command", sorted(ALIASES.values()))
def test_every_global_option_is_an_option_of_every_alias(command: str) -> None:
    alias = alias_command(command)
    for param in client_group.params:
        assert isinstance(param, click.Option)
        assert param in alias.params, (command, param.name)
    assert set(load_command(command).params) <= set(alias.params)


def _write_profile(kenv, tmp_path: Path) -> Path:
    """A profile `lab` with a storage dir of its own, so its use shows in the stored path."""
    lab_storage = tmp_path / "lab-storage"
    config = Path(kenv["KACHERY_CONFIG"])
    config.parent.mkdir(parents=True)
    plain = tmp_path / "plain-storage"  # used without the profile (never the home dir)
    config.write_text(f'storage_dir = "{plain}"\n[profiles.lab]\nstorage_dir = "{lab_storage}"\n')
    return lab_storage


@pytest.mark.parametrize(
    "before, after",
    [
        (["--profile", "lab"], []),
        ([], ["--profile", "lab"]),
        (["--profile=lab", "--debug"], []),
        (["--backend", "local"], ["--profile", "lab"]),
        (["--transport=local"], ["--profile=lab", "--debug"]),
    ],
)
def test_global_options_before_or_after_the_arguments(
    cli, kenv, tmp_path: Path, before, after
) -> None:
    lab_storage = _write_profile(kenv, tmp_path)
    env = {k: v for k, v in kenv.items() if k != "KACHERY_STORAGE_DIR"}
    src = tmp_path / "f.txt"
    src.write_text("profile test")
    stored = cli(*before, str(src), *after, program="kachery-store", env=env)
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    loaded = cli(*after, uri, *before, program="kachery-load", env=env)
    assert loaded.returncode == 0, loaded
    assert lab_storage in Path(loaded.stdout.strip()).parents
    assert cli(uri, *before, *after, program="kachery-cat", env=env).stdout == "profile test"
    linked = cli(*before, "--label", "f.txt", str(src), *after, program="kachery-link", env=env)
    assert linked.stdout.strip() == uri


def test_alias_options_and_errors(cli, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("x")
    uri = cli(str(src), "--label", "b.txt", program="kachery-store").stdout.strip()
    assert uri.endswith("/b.txt")
    wrong = cli("--backend", "nope", uri, program="kachery-cat")
    assert wrong.returncode == 1 and "unknown backend 'nope'" in wrong.stderr
    usage = cli("--bogus", uri, program="kachery-cat")
    assert usage.returncode == 2
    # click words it "No such option: --bogus" or "No such option '--bogus'" by version
    assert re.search(r"No such option:? '?--bogus", usage.stderr), usage
    assert usage.stderr.count("\n") == 1 and "kachery-cat --help" in usage.stderr
    helped = cli("--help", program="kachery-store").stdout
    assert "--backend, --transport NAME" in helped and "--profile NAME" in helped
    assert "--label" in helped


def test_after_double_dash_everything_is_an_argument(cli, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "--debug").write_text("a file named like an option")
    monkeypatch.chdir(tmp_path)  # the subprocess starts here
    named = cli("--", "--debug", program="kachery-store")
    assert named.returncode == 0, named
    assert named.stdout.strip().endswith("/--debug")


def test_main_command_takes_global_options_after_the_subcommand(cli, kenv, tmp_path: Path) -> None:
    """`kachery-client store-file a.bin --debug` as `kachery-store a.bin --debug` takes it;
    an option after the subcommand wins over the same one before it."""
    lab_storage = _write_profile(kenv, tmp_path)
    env = {k: v for k, v in kenv.items() if k != "KACHERY_STORAGE_DIR"}
    src = tmp_path / "a.bin"
    src.write_bytes(b"after the subcommand")
    stored = cli("store-file", str(src), "--debug", "--profile", "lab", env=env)
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    loaded = cli("load-file", uri, "--transport", "local", "--profile=lab", env=env)
    assert loaded.returncode == 0, loaded
    assert lab_storage in Path(loaded.stdout.strip()).parents
    later_wins = cli(
        "--backend", "nope", "cat-file", uri, "--backend=local", "--profile=lab", env=env
    )
    assert later_wins.returncode == 0 and later_wins.stdout == "after the subcommand", later_wins
    earlier_kept = cli("--profile", "lab", "load-file", uri, "--transport", "local", env=env)
    assert lab_storage in Path(earlier_kept.stdout.strip()).parents, earlier_kept
    missing = cli("load-file", "sha1://" + "0" * 40, "--debug", env=env)
    assert missing.returncode == 1 and "Traceback" in missing.stderr, missing
    assert "Error: sha1://" + "0" * 40 in missing.stderr
    own = cli("backends", "--debug", env=env)  # `backends` keeps its own --debug
    assert own.returncode == 0 and "local" in own.stdout, own
