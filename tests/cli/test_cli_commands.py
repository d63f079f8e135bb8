"""The CLI's commands, run as real subprocesses against the embedded backend."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from conftest import sha1_file, write_random_file

from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.store.layout import StorageLayout


def storage(kenv: dict) -> StorageLayout:
    return StorageLayout(Path(kenv["KACHERY_STORAGE_DIR"]))


def test_store_load_cat_round_trip(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "hello.txt"
    src.write_bytes(b"Hello, world!")
    stored = cli("store-file", str(src))
    assert stored.returncode == 0, stored
    assert stored.stdout == "sha1://943a702d06f34599aee1f8da8ef9f7296031d699/hello.txt\n"
    assert stored.stderr == ""
    uri = stored.stdout.strip()

    loaded = cli("load-file", uri)
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    assert path == storage(kenv).object_path("943a702d06f34599aee1f8da8ef9f7296031d699")
    assert path.read_bytes() == b"Hello, world!"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert loaded.stderr == ""

    assert cli("cat-file", uri).stdout_bytes == b"Hello, world!"
    assert cli("cat-file", uri, "--start", "7", "--end", "12").stdout_bytes == b"world"
    assert cli("cat-file", uri, "--start", "7").stdout_bytes == b"world!"
    assert cli("cat-file", uri, "--start", "13").stdout_bytes == b""


def test_load_file_dest_file_and_directory(cli, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(5000))
    uri = cli("store-file", str(src)).stdout.strip()
    out = tmp_path / "copy.bin"
    result = cli("load-file", uri, "--dest", str(out))
    assert result.returncode == 0, result
    assert result.stdout.strip() == str(out)
    assert out.read_bytes() == src.read_bytes()
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    result = cli("load-file", uri, "--dest", str(outdir))
    assert result.stdout.strip() == str(outdir / "data.bin")
    assert (outdir / "data.bin").read_bytes() == src.read_bytes()
    assert [p.name for p in outdir.iterdir()] == ["data.bin"]  # no staging leftovers


def test_store_from_stdin_and_label(cli, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    result = cli("store-file", "-", "--label", "from-pipe.bin", input=data)
    assert result.returncode == 0, result
    sha1 = hashlib.sha1(data).hexdigest()
    assert result.stdout.strip() == f"sha1://{sha1}/from-pipe.bin"
    assert cli("cat-file", result.stdout.strip()).stdout_bytes == data


def test_large_file_gets_a_compact_manifest(cli, kenv, tmp_path: Path) -> None:
    size = 2 * CHUNK_SIZE + 12345
    src = write_random_file(tmp_path / "big.bin", size)
    result = cli("store-file", str(src))
    assert result.returncode == 0, result
    uri = result.stdout.strip()
    sha1 = sha1_file(src)
    assert uri.startswith(f"sha1://{sha1}/big.bin?manifest=")
    manifest_sha1 = uri.rsplit("=", 1)[1]
    raw = storage(kenv).object_path(manifest_sha1).read_bytes()
    assert hashlib.sha1(raw).hexdigest() == manifest_sha1
    assert b" " not in raw  # compact separators
    manifest = json.loads(raw)
    assert manifest["size"] == size and manifest["sha1"] == sha1
    bounds = [(c["start"], c["end"]) for c in manifest["chunks"]]
    assert bounds == [(0, CHUNK_SIZE), (CHUNK_SIZE, 2 * CHUNK_SIZE), (2 * CHUNK_SIZE, size)]
    with open(src, "rb") as f:
        for chunk in manifest["chunks"]:
            f.seek(chunk["start"])
            piece = f.read(chunk["end"] - chunk["start"])
            assert hashlib.sha1(piece).hexdigest() == chunk["sha1"]
    # link-file of the same file gives the same URI
    assert cli("link-file", str(src)).stdout.strip() == uri


def test_exactly_threshold_has_no_manifest(cli, tmp_path: Path) -> None:
    src = write_random_file(tmp_path / "edge.bin", 20_000_000)
    uri = cli("store-file", str(src)).stdout.strip()
    assert "?" not in uri and uri.endswith("/edge.bin")


def test_link_file_serves_original_until_it_changes(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "linked.dat"
    src.write_bytes(os.urandom(4096))
    result = cli("link-file", str(src))
    assert result.returncode == 0, result
    uri = result.stdout.strip()
    sha1 = sha1_file(src)
    layout = storage(kenv)
    assert not layout.object_path(sha1).exists()  # no copy
    record = json.loads(layout.link_path(sha1).read_text())
    assert record["path"] == str(src.resolve())
    assert record["stat"]["size"] == 4096
    assert cli("load-file", uri).stdout.strip() == str(src.resolve())
    assert cli("cat-file", uri).stdout_bytes == src.read_bytes()

    src.write_bytes(os.urandom(4096))  # same size, new content and mtime
    os.utime(src, (1, 1))
    for command in ("load-file", "cat-file"):
        refused = cli(command, uri)
        assert refused.returncode == 1, refused
        assert refused.stdout == ""
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ")
        assert str(src.resolve()) in lines[0] and "changed" in lines[0]

    src.unlink()
    gone = cli("load-file", uri)
    assert gone.returncode == 1 and "gone" in gone.stderr


def test_store_supersedes_a_link(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    uri = cli("link-file", str(src)).stdout.strip()
    assert cli("store-file", str(src)).stdout.strip() == uri
    sha1 = sha1_file(src)
    assert storage(kenv).object_path(sha1).exists()
    assert not storage(kenv).link_path(sha1).exists()
    src.unlink()
    assert cli("cat-file", uri).stdout_bytes == b"x" * 1000


def test_version_info_config_backends(cli, kenv) -> None:
    from kachery_core import __version__

    assert cli("version").stdout == f"kachery-client {__version__}\n"
    assert cli("--version").stdout == f"kachery-client {__version__}\n"
    info = cli("info")
    assert info.returncode == 0, info
    assert "backend           local" in info.stdout
    assert "no node answered" in info.stdout
    assert kenv["KACHERY_STORAGE_DIR"] in info.stdout
    backends = cli("backends").stdout
    assert "local" in backends and "offline" in backends and "kachery-lab" in backends
    config = cli("config").stdout
    assert (
        f"storage_dir          {kenv['KACHERY_STORAGE_DIR']}  [environment KACHERY_STORAGE_DIR"
        in config
    )
    assert "daemon_host          localhost  [default" in config
    assert "backend              (unset)  [default; env KACHERY_BACKEND]" in config
    chosen = cli("--backend", "local", "config").stdout
    assert "backend              local  [command line; env KACHERY_BACKEND]" in chosen
    by_old_name = cli("config", env=dict(kenv, KACHERY_TRANSPORT="offline")).stdout
    assert "backend              offline  [environment KACHERY_TRANSPORT" in by_old_name
    assert "transport" not in cli("config").stdout.replace("KACHERY_TRANSPORT", "")


def test_aliases(cli, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("alias test")
    uri = cli(str(src), program="kachery-store").stdout.strip()
    assert uri.endswith("/a.txt")
    assert cli(uri, program="kachery-cat").stdout == "alias test"
    assert Path(cli(uri, program="kachery-load").stdout.strip()).read_text() == "alias test"
    assert cli(str(src), program="kachery-link").stdout.strip() == uri
    forced = cli("--transport", "nope", uri, program="kachery-cat")
    assert forced.returncode == 1 and "unknown backend 'nope'" in forced.stderr


def test_generate_node_id(cli, kenv, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "node.pem"
    result = cli("generate-node-id", "--key-file", str(key_file))
    assert result.returncode == 0, result
    node_id = result.stdout.strip()
    assert len(node_id) == 64 and all(c in "0123456789abcdef" for c in node_id)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    config_file = Path(kenv["KACHERY_CONFIG"])
    assert f'expected_node_id = "{node_id}"' in config_file.read_text()
    assert "expected_node_id     " + node_id in cli("config").stdout

    again = cli("generate-node-id", "--key-file", str(key_file))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "expected_node_id" in config_file.read_text()

    # The key loads and yields the same node ID.
    from kachery_core.protocol.node_key import load_key_file, node_id_of

    assert node_id_of(load_key_file(key_file)) == node_id

    # A storage dir owned by another node is refused, naming both IDs and the config file.
    store = Path(kenv["KACHERY_STORAGE_DIR"])
    store.mkdir(parents=True, exist_ok=True)
    other = "ab" * 32
    (store / "kachery-node-id").write_text(other)
    src = tmp_path / "f.txt"
    src.write_text("x")
    refused = cli("store-file", str(src))
    assert refused.returncode == 1
    assert node_id in refused.stderr and other in refused.stderr
    assert str(config_file) in refused.stderr
    (store / "kachery-node-id").write_text(node_id)
    assert cli("store-file", str(src)).returncode == 0

    forced = cli("generate-node-id", "--key-file", str(key_file), "--force")
    assert forced.returncode == 0 and forced.stdout.strip() != node_id


def test_debug_shows_traceback(cli) -> None:
    plain = cli("load-file", "sha1://" + "0" * 40)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = cli("--debug", "load-file", "sha1://" + "0" * 40)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("Error: ")
