"""Every `kachery-daemon` command finds the node's storage directory as `start` does
(--storage-dir, else KACHERY_STORAGE_DIR, else `storage_dir` in a config file), says which
one it used, and without one fails in one line naming --storage-dir, creating nothing.

Real `kachery-daemon` processes against a real node.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import CliResult, command

STORAGE_COMMANDS: List[List[str]] = [
    ["token", "create", "--label", "alice laptop"],
    ["token", "list"],
    ["token", "revoke", "alice laptop"],
    ["info"],
    ["verify"],
    ["channel", "check", "lab"],
    ["stop"],
]
"""Every command that works on a storage directory (`start` aside)."""


def daemon(*args: str, env: Dict[str, str]) -> CliResult:
    proc = subprocess.run(
        [command("kachery-daemon"), *args], capture_output=True, env=env, timeout=60
    )
    return CliResult(proc)


def _run_all_found(node, env: Dict[str, str], where: str) -> None:
    """Each command on `node`'s storage, found through `env` alone; `where` is how each
    says where the directory came from."""
    named = f"{node.storage_dir} ({where})"
    made = daemon("token", "create", "--label", "alice laptop", env=env)
    assert made.returncode == 0, made
    assert made.stdout.startswith("kt_") and named in made.stderr, made
    listed = daemon("token", "list", env=env)
    assert listed.returncode == 0 and listed.stdout.split()[3:] == ["write", "alice", "laptop"]
    assert named in listed.stderr, listed
    revoked = daemon("token", "revoke", "alice laptop", env=env)
    assert revoked.returncode == 0 and named in revoked.stderr, revoked
    assert "alice laptop" not in (node.storage_dir / "kachery-tokens.json").read_text()
    info = daemon("info", env=env)
    assert info.returncode == 0, info
    assert f"storage dir  {named}" in info.stdout and "running      yes" in info.stdout
    verified = daemon("verify", env=env)
    assert verified.returncode == 0 and named in verified.stderr, verified
    channel = daemon("channel", "check", "lab", env=env)  # found the storage: no such channel
    assert channel.returncode == 1 and "no channel 'lab'" in channel.stderr, channel
    stopped = daemon("stop", env=env)
    assert stopped.returncode == 0 and named in stopped.stderr, stopped
    assert node.proc is not None and node.proc.wait(30) == 0


def test_commands_find_the_storage_from_the_environment(node, kenv, tmp_path: Path) -> None:
    env = dict(kenv, HOME=str(tmp_path / "admin-home"))
    assert env["KACHERY_STORAGE_DIR"] == str(node.storage_dir)
    assert not Path(env["KACHERY_CONFIG"]).exists()
    _run_all_found(node, env, "from KACHERY_STORAGE_DIR")


def test_commands_find_the_storage_from_the_config_file(node, kenv, tmp_path: Path) -> None:
    config = tmp_path / "etc" / "config.toml"  # the system file a lab's admin rolls out
    config.parent.mkdir()
    config.write_text(f'storage_dir = "{node.storage_dir}"\n')
    env = {k: v for k, v in kenv.items() if k != "KACHERY_STORAGE_DIR"}
    env.update(KACHERY_SYSTEM_CONFIG=str(config), HOME=str(tmp_path / "admin-home"))
    _run_all_found(node, env, f"from system config file {config}")


@pytest.mark.parametrize("args", STORAGE_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_without_storage_each_command_names_the_flag(args, kenv, tmp_path: Path) -> None:
    home = tmp_path / "admin-home"
    home.mkdir()
    env = {k: v for k, v in kenv.items() if k != "KACHERY_STORAGE_DIR"}
    env["HOME"] = str(home)
    result = daemon(*args, env=env)
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert f"no storage directory at {home / 'kachery-storage'} (the default)" in lines[0]
    assert "--storage-dir" in lines[0]
    assert os.listdir(home) == []  # nothing created


@pytest.mark.parametrize("args", STORAGE_COMMANDS[:3], ids=lambda a: " ".join(a[:2]))
def test_tokens_need_a_nodes_storage_directory(args, kenv, tmp_path: Path) -> None:
    """A directory that is no node's (a client's own storage, a typo'd mount) gets no token
    file: the command says so and writes nothing."""
    plain = tmp_path / "not-a-node"
    plain.mkdir()
    result = daemon(*args, env=dict(kenv, KACHERY_STORAGE_DIR=str(plain)))
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{plain} (from KACHERY_STORAGE_DIR) is no node's storage directory" in result.stderr
    assert "--storage-dir" in result.stderr
    assert os.listdir(plain) == []
