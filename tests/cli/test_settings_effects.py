"""Each setting shown to have its effect, through the real CLI where a user would see it."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from kachery_core.content.manifest import CHUNK_SIZE, Manifest, chunk_bounds
from kachery_core.errors import IntegrityError
from kachery_core.settings.config import resolve_config
from kachery_core.store.layout import StorageLayout
from kachery_core.store.local import LocalStorage


def test_storage_dir(cli, kenv, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    src = tmp_path / "f.txt"
    src.write_text("where do I go")
    sha1 = hashlib.sha1(b"where do I go").hexdigest()
    result = cli("store-file", str(src), env=dict(kenv, KACHERY_STORAGE_DIR=str(other)))
    assert result.returncode == 0, result
    assert (other / "sha1" / sha1[:2] / sha1[2:4] / sha1[4:6] / sha1).read_text() == "where do I go"
    assert not Path(kenv["KACHERY_STORAGE_DIR"]).exists()


def test_daemon_host_selects_remote_without_connecting(cli, kenv) -> None:
    from kachery_client.backends.registry import get_registry
    from kachery_client.backends.selection import select_backend

    # Selection itself sends nothing (traffic must stay on loopback in tests).
    chosen = select_backend(
        resolve_config(env=dict(kenv, KACHERY_DAEMON_HOST="203.0.113.5")), get_registry()
    )
    assert chosen.name == "remote" and "203.0.113.5" in chosen.reason
    local = cli("info", env=dict(kenv, KACHERY_DAEMON_HOST="localhost"))
    assert "backend           local" in local.stdout


def test_daemon_port_shown(cli, kenv) -> None:
    info = cli("info", env=dict(kenv, KACHERY_DAEMON_PORT="23456"))
    assert "localhost:23456" in info.stdout
    config = cli("config", env=dict(kenv, KACHERY_DAEMON_PORT="23456")).stdout
    assert "daemon_port          23456  [environment KACHERY_DAEMON_PORT" in config


def test_temp_dir_and_keep_temp_files(kenv, tmp_path: Path) -> None:
    temp = tmp_path / "staging"

    def failing_store(keep: bool) -> None:
        config = resolve_config(
            {"temp_dir": str(temp), "keep_temp_files": keep}, explicit_source="test"
        )
        store = LocalStorage(config.storage_dir, config.temp_dir, config.keep_temp_files)
        with pytest.raises(IntegrityError) as info:
            store.store_stream(io.BytesIO(b"some bytes"), expected_sha1="0" * 40)
        if keep:
            assert str(temp) in str(info.value)

    failing_store(keep=False)
    assert list(temp.iterdir()) == []
    failing_store(keep=True)
    kept = list(temp.iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == b"some bytes"


def test_temp_dir_used_by_cli_store(cli, kenv, tmp_path: Path) -> None:
    temp = tmp_path / "my-temp"
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc" * 1000)
    result = cli("store-file", str(src), env=dict(kenv, KACHERY_TEMP_DIR=str(temp)))
    assert result.returncode == 0, result
    assert temp.is_dir() and list(temp.iterdir()) == []  # created, used, cleaned
    assert not (Path(kenv["KACHERY_STORAGE_DIR"]) / "tmp").exists()


def test_keep_temp_files_when_a_stream_breaks(kenv, tmp_path: Path, monkeypatch) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[override]
            self.calls += 1
            if self.calls > 3:
                raise OSError("connection reset")
            buffer[:1000] = b"x" * 1000
            return 1000

    for keep in (False, True):
        monkeypatch.setenv("KACHERY_KEEP_TEMP_FILES", "1" if keep else "0")
        import kachery_client as kc

        with pytest.raises(OSError):
            kc.default_client().store_stream(Broken())  # type: ignore[arg-type]
        temp = Path(kenv["KACHERY_STORAGE_DIR"]) / "tmp"
        leftovers = list(temp.iterdir())
        assert len(leftovers) == (1 if keep else 0)
        if keep:
            assert leftovers[0].stat().st_size <= 3000  # a prefix of what was read
            leftovers[0].unlink()


def _offline_dir_with_chunks(root: Path, data: bytes) -> tuple[str, str]:
    """An offline dir holding a file's manifest and chunk objects, but not the file."""
    store = LocalStorage(root)
    chunks = []
    for start, end in chunk_bounds(len(data)):
        piece = data[start:end]
        chunks.append(store.store_bytes(piece).sha1)
    from kachery_core.content.manifest import Chunk

    sha1 = hashlib.sha1(data).hexdigest()
    manifest = Manifest(
        len(data),
        sha1,
        tuple(Chunk(s, e, h) for (s, e), h in zip(chunk_bounds(len(data)), chunks)),
    )
    return sha1, store.store_bytes(manifest.to_bytes()).sha1


def test_offline_storage_dir(cli, kenv, tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    data = bytes(range(256)) * (CHUNK_SIZE // 256 + 100)  # just over one chunk
    sha1, manifest_sha1 = _offline_dir_with_chunks(offline, data)
    env = dict(kenv, KACHERY_OFFLINE_STORAGE_DIR=str(offline))
    info = cli("info", env=env)
    assert "backend           offline" in info.stdout
    assert "KACHERY_OFFLINE_STORAGE_DIR is set" in info.stdout

    uri = f"sha1://{sha1}/big.bin?manifest={manifest_sha1}"
    loaded = cli("load-file", uri, env=env)
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    assert path == StorageLayout(offline).object_path(sha1)
    assert hashlib.sha1(path.read_bytes()).hexdigest() == sha1
    assert (offline / "kachery-tmp").is_dir()  # assembled through the offline temp dir
    assert list((offline / "kachery-tmp").iterdir()) == []
    assert not Path(kenv["KACHERY_STORAGE_DIR"]).exists()  # never touched

    src = tmp_path / "new.txt"
    src.write_text("x")
    for command in ("store-file", "link-file"):
        refused = cli(command, str(src), env=env)
        assert refused.returncode == 1
        assert "offline" in refused.stderr and "KACHERY_OFFLINE_STORAGE_DIR" in refused.stderr

    missing = cli(
        "load-file",
        "sha1://" + "1" * 40,
        env=dict(env, KACHERY_OFFLINE_STORAGE_DIR=str(tmp_path / "nope")),
    )
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_offline_python_api_refuses_mutables(kenv, tmp_path: Path, monkeypatch) -> None:
    import kachery_client as kc

    monkeypatch.setenv("KACHERY_OFFLINE_STORAGE_DIR", str(tmp_path / "off"))
    with pytest.raises(kc.UnsupportedOperation) as info:
        kc.set("k", 1)
    assert "offline" in str(info.value) and "KACHERY_OFFLINE_STORAGE_DIR" in str(info.value)


def test_transport_precedence_flag_env_config(cli, kenv, tmp_path: Path) -> None:
    config = Path(kenv["KACHERY_CONFIG"])
    config.parent.mkdir(parents=True)
    offline = tmp_path / "off"
    config.write_text(f'transport = "offline"\noffline_storage_dir = "{offline}"\n')
    assert "chosen by config file" in cli("info").stdout
    env = dict(kenv, KACHERY_TRANSPORT="local")
    info = cli("info", env=env).stdout
    assert "backend           local" in info and "environment KACHERY_TRANSPORT" in info
    info = cli("--transport", "offline", "info", env=env).stdout
    assert "backend           offline" in info and "command line" in info


def test_backend_precedence_flag_env_config(cli, kenv, tmp_path: Path) -> None:
    """The same precedence under the new spelling; KACHERY_BACKEND beats KACHERY_TRANSPORT."""
    config = Path(kenv["KACHERY_CONFIG"])
    config.parent.mkdir(parents=True)
    offline = tmp_path / "off"
    config.write_text(f'backend = "offline"\noffline_storage_dir = "{offline}"\n')
    assert "chosen by config file" in cli("info").stdout
    env = dict(kenv, KACHERY_BACKEND="local", KACHERY_TRANSPORT="offline")
    info = cli("info", env=env).stdout
    assert "backend           local" in info and "environment KACHERY_BACKEND" in info
    info = cli("--backend", "offline", "info", env=env).stdout
    assert "backend           offline" in info and "command line" in info


def test_env_beats_config_file(cli, kenv, tmp_path: Path) -> None:
    config = Path(kenv["KACHERY_CONFIG"])
    config.parent.mkdir(parents=True)
    config.write_text(f'storage_dir = "{tmp_path / "from-file"}"\ndaemon_port = 23999\n')
    out = cli("config").stdout
    assert f"storage_dir          {kenv['KACHERY_STORAGE_DIR']}  [environment" in out
    env = {k: v for k, v in kenv.items() if k != "KACHERY_DAEMON_PORT"}
    out = cli("config", env=env).stdout
    assert f"daemon_port          23999  [config file {config}" in out
    env.pop("KACHERY_STORAGE_DIR")
    out = cli("config", env=env).stdout
    assert f"storage_dir          {tmp_path / 'from-file'}  [config file" in out


def test_client_keywords_beat_env(kenv, tmp_path: Path) -> None:
    import kachery_client as kc

    client = kc.Client(storage_dir=str(tmp_path / "explicit"))
    uri = client.store_text("explicit wins")
    assert client.config.source("storage_dir") == "Client() argument"
    sha1 = kc.parse_uri(uri).sha1
    assert StorageLayout(tmp_path / "explicit").object_path(sha1).exists()
