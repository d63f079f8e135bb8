"""`kachery-client usage|pin|unpin|drop|gc` and the same `kachery-daemon` commands, as real
subprocesses on the embedded backend's storage directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kachery_core.content.hashing import sha1_of_bytes
from kachery_core.store.local import LocalStorage


def fetched(kenv: dict, data: bytes) -> str:
    """An object as a download puts it in the store: cached."""
    storage = LocalStorage(Path(kenv["KACHERY_STORAGE_DIR"]))
    return "sha1://" + storage.store_bytes(data, expected_sha1=sha1_of_bytes(data)).sha1


def usage(cli) -> dict:
    result = cli("usage", "--json")
    assert result.returncode == 0, result
    return json.loads(result.stdout)


def test_usage_counts_pinned_cached_and_links(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "mine.txt"
    src.write_bytes(b"stored by me")
    linked = tmp_path / "linked.bin"
    linked.write_bytes(os.urandom(3000))
    assert cli("store-file", str(src)).returncode == 0
    assert cli("link-file", str(linked)).returncode == 0
    fetched(kenv, b"from elsewhere")
    figures = usage(cli)
    assert figures["pinned"] == {"count": 1, "bytes": 12}
    assert figures["cached"] == {"count": 1, "bytes": 14}
    assert figures["links"] == {"count": 1, "bytes": 3000}
    assert figures["total"] == {"count": 2, "bytes": 26}
    text = cli("usage")
    assert text.returncode == 0 and "pinned" in text.stdout and "cached" in text.stdout


def test_gc_evicts_cached_and_keeps_pinned(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "mine.txt"
    src.write_bytes(b"keep")
    pinned = cli("store-file", str(src)).stdout.strip()
    cached = [fetched(kenv, b"cache %d" % i) for i in range(5)]
    env = dict(kenv, KACHERY_GC_GRACE_SECONDS="0")
    dry = cli("gc", "--dry-run", env=env)
    assert dry.returncode == 0 and "would evict 5 cached objects" in dry.stdout, dry
    assert usage(cli)["cached"]["count"] == 5
    kept = cli("gc", env=dict(kenv))  # all were used just now: inside the grace period
    assert "evicted 0 cached objects" in kept.stdout, kept
    done = cli("gc", "--json", env=env)
    assert done.returncode == 0, done
    assert json.loads(done.stdout)["evicted"] == 5
    assert usage(cli)["cached"]["count"] == 0
    assert cli("cat-file", pinned).stdout_bytes == b"keep"
    missing = cli("cat-file", cached[0])
    assert missing.returncode == 1


def test_pin_unpin_and_drop(cli, kenv, tmp_path: Path) -> None:
    uri = fetched(kenv, b"pin me")
    assert cli("pin", uri).returncode == 0
    assert usage(cli)["pinned"]["count"] == 1
    refused = cli("drop", uri)
    assert refused.returncode == 1
    assert "is pinned" in refused.stderr and "--force" in refused.stderr
    assert cli("cat-file", uri).stdout_bytes == b"pin me"
    assert cli("unpin", uri).returncode == 0
    dropped = cli("drop", uri)
    assert dropped.returncode == 0, dropped
    assert dropped.stdout.startswith(f"removed {uri}")
    assert usage(cli)["total"]["count"] == 0


def test_bad_sizes_and_uris_are_one_line_errors(cli, kenv) -> None:
    nothing = cli("usage")
    assert nothing.returncode == 1 and "no storage directory at" in nothing.stderr
    fetched(kenv, b"something")
    bad = cli("gc", "--max-size", "lots")
    assert bad.returncode == 2
    assert "'lots'" in bad.stderr and "50GiB" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    bad_uri = cli("pin", "sha1://nothex")
    assert bad_uri.returncode in (1, 2) and "nothex" in bad_uri.stderr
    absent = cli("pin", "sha1://" + "a" * 40)
    assert absent.returncode == 1 and "not in" in absent.stderr
    env = dict(kenv, KACHERY_MAX_CACHE_SIZE="ten")
    setting = cli("usage", env=env)
    assert setting.returncode == 1 and "KACHERY_MAX_CACHE_SIZE" in setting.stderr


def test_kachery_daemon_commands_work_on_the_node_storage(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "mine.txt"
    src.write_bytes(b"node's own")
    pinned = cli("store-file", str(src)).stdout.strip()
    cached = fetched(kenv, b"node's cache")
    root = kenv["KACHERY_STORAGE_DIR"]
    seen = cli("usage", "--json", "--storage-dir", root, program="kachery-daemon")
    assert seen.returncode == 0, seen
    assert json.loads(seen.stdout)["cached"]["count"] == 1
    pinning = cli("pin", cached, "--storage-dir", root, program="kachery-daemon")
    assert pinning.returncode == 0, pinning
    assert cli("unpin", cached, "--storage-dir", root, program="kachery-daemon").returncode == 0
    env = dict(kenv, KACHERY_GC_GRACE_SECONDS="0")
    gc = cli("gc", "--storage-dir", root, "--max-size", "1GiB", program="kachery-daemon", env=env)
    assert "evicted 0" in gc.stdout, gc  # within the limit: nothing to do
    gc = cli("gc", "--storage-dir", root, program="kachery-daemon", env=env)
    assert "evicted 1 cached objects" in gc.stdout, gc
    refused = cli("drop", pinned, "--storage-dir", root, program="kachery-daemon")
    assert refused.returncode == 1 and "is pinned" in refused.stderr
    forced = cli("drop", pinned, "--force", "--storage-dir", root, program="kachery-daemon")
    assert forced.returncode == 0, forced
    nowhere = cli("gc", "--storage-dir", str(tmp_path / "none"), program="kachery-daemon")
    assert nowhere.returncode == 1 and "no storage directory" in nowhere.stderr
