"""`kachery-client verify` and `kachery-daemon verify`: damaged objects are reported and
moved aside, stale links are reported, a clean store passes. Real CLI processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import sha1_file, write_random_file

from kachery_core.store.layout import StorageLayout

BIG = 21_000_000
"""Over 20,000,000 bytes: big objects are checked too."""


def _layout(kenv: dict) -> StorageLayout:
    return StorageLayout(Path(kenv["KACHERY_STORAGE_DIR"]))


def _damage(path: Path, offset: int = 0) -> None:
    """Flip one byte in place, keeping the size (objects are read-only: allow it first)."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _quarantined(root: Path) -> list:
    q = root / "quarantine"
    return sorted(p.name for p in q.iterdir()) if q.is_dir() else []


def test_clean_store_exits_0(cli, kenv, tmp_path: Path) -> None:
    big = write_random_file(tmp_path / "big.bin", BIG)
    small = tmp_path / "small.txt"
    small.write_text("small")
    linked = tmp_path / "linked.txt"
    linked.write_text("linked")
    for args in (("store-file", str(big)), ("store-file", str(small)), ("link-file", str(linked))):
        assert cli(*args).returncode == 0
    result = cli("verify")
    assert result.returncode == 0, result
    assert result.stdout == ""
    assert "all good" in result.stderr and "1 links" in result.stderr
    daemon = cli("verify", "--storage-dir", kenv["KACHERY_STORAGE_DIR"], program="kachery-daemon")
    assert daemon.returncode == 0 and daemon.stdout == "", daemon


def test_damaged_big_object_is_quarantined_and_no_longer_served(cli, kenv, tmp_path: Path) -> None:
    big = write_random_file(tmp_path / "big.bin", BIG, seed=3)
    small = tmp_path / "good.txt"
    small.write_text("good")
    uri = cli("store-file", str(big)).stdout.strip()
    good = cli("store-file", str(small)).stdout.strip()
    sha1 = sha1_file(big)
    layout = _layout(kenv)
    _damage(layout.object_path(sha1), BIG // 2)

    result = cli("verify")
    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"damaged: sha1://{sha1} ")
    assert "moved to" in lines[0]
    assert not layout.object_path(sha1).exists()
    assert [n.split(".")[0] for n in _quarantined(layout.root)] == [sha1]

    gone = cli("load-file", uri)
    assert gone.returncode == 1 and "not found" in gone.stderr
    assert cli("cat-file", good).stdout == "good"  # the rest is untouched
    assert cli("verify").returncode == 0
    assert cli("store-file", str(big)).stdout.strip() == uri  # stored again: served again
    assert sha1_file(Path(cli("load-file", uri).stdout.strip())) == sha1


def test_uris_named_and_missing(cli, kenv, tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("a")
    b.write_text("b")
    uri_a = cli("store-file", str(a)).stdout.strip()
    uri_b = cli("store-file", str(b)).stdout.strip()
    _damage(_layout(kenv).object_path(sha1_file(b)))
    assert cli("verify", uri_a).returncode == 0  # b is damaged, but not asked about
    missing = "sha1://" + "0" * 40
    result = cli("verify", uri_a, missing)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"missing: {missing} is not in {kenv['KACHERY_STORAGE_DIR']}; nothing to check"
    ]
    damaged = cli("verify", uri_b)
    assert damaged.returncode == 1 and damaged.stdout.startswith("damaged: ")
    bad = cli("verify", "not-a-uri")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ") and bad.stdout == ""


def test_stale_link_is_reported_then_pruned(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "linked.txt"
    src.write_text("original")
    uri = cli("link-file", str(src)).stdout.strip()
    sha1 = sha1_file(src)
    src.write_text("changed!")
    link = _layout(kenv).link_path(sha1)

    result = cli("verify")
    assert result.returncode == 1, result
    assert result.stdout.startswith(f"stale: sha1://{sha1} link to {src.resolve()}")
    assert "--prune-stale" in result.stdout and link.exists()
    pruned = cli("verify", "--prune-stale")
    assert pruned.returncode == 1 and "removed" in pruned.stdout
    assert not link.exists()
    assert cli("verify").returncode == 0
    assert cli("load-file", uri).returncode == 1


def test_damaged_link_record_and_unchanged_file(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "linked.txt"
    src.write_text("linked")
    cli("link-file", str(src))
    link = _layout(kenv).link_path(sha1_file(src))
    link.write_text("{not json")
    result = cli("verify")
    assert result.returncode == 1 and "corrupt link record" in result.stdout
    assert not link.exists()
    assert [n.split(".")[1] for n in _quarantined(_layout(kenv).root)] == ["link"]


def test_node_storage_verified_while_it_runs(node, cli, kenv, tmp_path: Path) -> None:
    """`kachery-daemon verify` on a running node's directory; the node stops serving it."""
    src = tmp_path / "served.bin"
    src.write_bytes(os.urandom(100_000))
    uri = cli("store-file", str(src)).stdout.strip()
    assert cli("info").stdout.splitlines()[0].split()[-1] == "http"
    sha1 = sha1_file(src)
    _damage(StorageLayout(node.storage_dir).object_path(sha1))
    result = cli("verify", "--storage-dir", str(node.storage_dir), program="kachery-daemon")
    assert result.returncode == 1 and result.stdout.startswith(f"damaged: sha1://{sha1}")
    gone = cli("load-file", uri)
    assert gone.returncode == 1 and "not found" in gone.stderr, gone
    assert cli("verify").returncode == 0  # the client's verify sees the node's directory too
    assert node.probe() is not None


def test_remote_cache_copy_is_fetched_again(node, cli, kenv, tmp_path: Path) -> None:
    """A damaged copy in a remote client's cache: verify sets it aside, a load re-fetches."""
    made = cli(
        "token",
        "create",
        "--label",
        "t",
        "--storage-dir",
        str(node.storage_dir),
        program="kachery-daemon",
    )
    src = tmp_path / "remote.bin"
    src.write_bytes(os.urandom(50_000))
    uri = cli("store-file", str(src)).stdout.strip()
    cache = tmp_path / "cache-storage"
    env = dict(
        kenv,
        KACHERY_BACKEND="remote",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_STORAGE_DIR=str(cache),
        KACHERY_AUTH_TOKEN=made.stdout.strip(),
    )
    path = Path(cli("load-file", uri, env=env).stdout.strip())
    assert str(path).startswith(str(cache))
    _damage(path)
    result = cli("verify", env=env)
    assert result.returncode == 1 and result.stdout.startswith("damaged: "), result
    assert _quarantined(cache)
    again = cli("load-file", uri, env=env)
    assert again.returncode == 0, again
    assert Path(again.stdout.strip()).read_bytes() == src.read_bytes()
    assert cli("verify", env=env).returncode == 0


def test_link_record_keeps_inode_and_ctime(cli, kenv, tmp_path: Path) -> None:
    """An edit with size and mtime put back is caught by the ctime (and inode)."""
    src = tmp_path / "data.txt"
    src.write_text("version 1")
    uri = cli("link-file", str(src)).stdout.strip()
    record = json.loads(_layout(kenv).link_path(sha1_file(src)).read_text())
    st = os.stat(src)
    assert record["stat"]["ino"] == st.st_ino and record["stat"]["ctime"] == st.st_ctime
    assert cli("cat-file", uri).stdout == "version 1"

    src.write_text("version 2")  # same size
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(src).st_mtime == st.st_mtime and os.stat(src).st_size == st.st_size
    for command in ("cat-file", "load-file"):
        refused = cli(command, uri)
        assert refused.returncode == 1 and refused.stdout == "", refused
        assert "changed" in refused.stderr and "ctime" in refused.stderr
    assert cli("verify").stdout.startswith("stale: ")


def test_old_link_records_are_checked_on_size_and_mtime(cli, kenv, tmp_path: Path) -> None:
    """Records written before ino/ctime existed are still read and served."""
    src = tmp_path / "old.txt"
    src.write_text("old record")
    uri = cli("link-file", str(src)).stdout.strip()
    link = _layout(kenv).link_path(sha1_file(src))
    record = json.loads(link.read_text())
    st = os.stat(src)
    link.write_text(
        json.dumps(
            {
                "path": record["path"],
                "manifest_hash": None,
                "stat": {"size": st.st_size, "mtime": st.st_mtime},
            }
        )
    )
    assert cli("cat-file", uri).stdout == "old record"
    assert cli("verify").returncode == 0
    src.write_text("new record")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    # Without ctime, this edit is caught by verify's re-hash (not by the lookup).
    result = cli("verify")
    assert result.returncode == 1 and "hashes to" in result.stdout
    assert cli("load-file", uri).returncode == 1
