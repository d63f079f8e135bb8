"""Secrets in files, handled as ssh handles its keys: `token create --output` writes a
private (0600) file, and a token file, a config file holding `auth_token` or a node key
readable by group or others gets one warning line per process, naming the fix.

Everything through real `kachery-client` and `kachery-daemon` processes and a real node.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Dict, List

from conftest import CliResult


def _warnings(result: CliResult) -> List[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


def _token_to_file(cli, node, path: Path, *extra: str, label: str = "") -> CliResult:
    return cli(
        "token",
        "create",
        "--label",
        label or f"file {path.name}",
        "--output",
        str(path),
        *extra,
        "--storage-dir",
        str(node.storage_dir),
        program="kachery-daemon",
    )


def _token_labels(cli, node) -> List[str]:
    listed = cli("token", "list", "--storage-dir", str(node.storage_dir), program="kachery-daemon")
    assert listed.returncode == 0, listed
    return [line.split(None, 3)[3] for line in listed.stdout.splitlines()]


def test_token_create_writes_a_private_file_and_prints_nothing(node, cli, tmp_path: Path) -> None:
    path = tmp_path / "alice.token"
    made = _token_to_file(cli, node, path)
    assert made.returncode == 0, made
    assert made.stdout == ""  # the token went to the file only
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert token.startswith("kt_") and token not in made.stderr
    assert f"written to {path} (mode 0600)" in made.stderr

    before = _token_labels(cli, node)
    path.chmod(0o644)
    again = _token_to_file(cli, node, path)
    assert again.returncode == 1, again
    assert again.stderr.count("\n") == 1 and f"--output {path} already exists" in again.stderr
    assert "--force" in again.stderr
    assert path.read_text().strip() == token  # untouched
    assert _token_labels(cli, node) == before  # and no token was made for nobody

    forced = _token_to_file(cli, node, path, "--force", label="replacement")
    assert forced.returncode == 0 and forced.stdout == "", forced
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() not in ("", token)

    alone = cli("token", "create", "--label", "x", "--force", program="kachery-daemon")
    assert alone.returncode == 2 and "--force goes with --output" in alone.stderr, alone


def test_a_token_file_others_can_read_is_warned_once(node, cli, kenv, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    assert _token_to_file(cli, node, token_file).returncode == 0
    env: Dict[str, str] = dict(
        kenv,
        KACHERY_BACKEND="remote",
        KACHERY_DAEMON_PORT=str(node.port),
        KACHERY_STORAGE_DIR=str(tmp_path / "cache"),
        KACHERY_AUTH_TOKEN_FILE=str(token_file),
    )
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(3):
        (tree / f"f{i}.txt").write_text(f"file {i}")

    token_file.chmod(0o644)
    stored = cli("store-file", "-r", str(tree), env=env)  # several requests, one process
    assert stored.returncode == 0, stored
    assert _warnings(stored) == [
        f"Warning: token file {token_file} is readable by its group and others (mode 0644), "
        f"who may then use the access token in it; chmod 600 {token_file}"
    ]
    token_file.chmod(0o640)
    loaded = cli("load-file", "-r", stored.stdout.strip(), "--dest", str(tmp_path / "out"), env=env)
    assert loaded.returncode == 0, loaded
    assert (tmp_path / "out" / "f2.txt").read_text() == "file 2"
    (warning,) = _warnings(loaded)
    assert "readable by its group (mode 0640)" in warning and f"chmod 600 {token_file}" in warning

    token_file.chmod(0o600)
    quiet = cli("store-file", str(tree / "f0.txt"), env=env)
    assert quiet.returncode == 0 and _warnings(quiet) == [], quiet


def test_a_config_file_holding_a_token_others_can_read_is_warned(
    node, cli, kenv, tmp_path: Path
) -> None:
    made = cli(
        "token", "create", "--label", "cfg", "--storage-dir", str(node.storage_dir),
        program="kachery-daemon",
    )  # fmt: skip
    token = made.stdout.strip()
    config = Path(kenv["KACHERY_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[profiles.lab]\nauth_token = "{token}"\n')
    config.chmod(0o644)
    shown = cli("config")
    assert shown.returncode == 0, shown
    assert _warnings(shown) == [
        f"Warning: config file {config} is readable by its group and others (mode 0644), "
        f"who may then use the auth_token in it; chmod 600 {config}"
    ]
    assert token not in shown.stdout + shown.stderr
    config.chmod(0o600)
    assert _warnings(cli("config")) == []
    config.write_text('daemon_host = "localhost"\n')  # no secret: its mode is its owner's choice
    config.chmod(0o644)
    assert _warnings(cli("config")) == []


def test_a_node_key_others_can_read_is_warned(cli, make_node, tmp_path: Path) -> None:
    key = tmp_path / "node-key.pem"
    made = cli("generate-node-id", "--key-file", str(key))
    assert made.returncode == 0, made
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.chmod(0o604)
    node = make_node("--node-key", str(key))
    log = node.log.read_text()
    warnings = [line for line in log.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        f"Warning: node key file {key} is readable by others (mode 0604), who may then use "
        f"the private key in it; chmod 600 {key}"
    ], log
    node.stop()
    key.chmod(0o600)
    os.truncate(node.log, 0)
    node.start()
    assert "Warning:" not in node.log.read_text()
