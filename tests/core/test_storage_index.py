"""The index of origins and recency, and what gc, drop and pin do with it (in process)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from kachery_core.content.hashing import sha1_of_bytes
from kachery_core.errors import InvalidInputError, NotFoundError
from kachery_core.store import collect
from kachery_core.store.index import CACHED, INDEX_FILE, PINNED
from kachery_core.store.local import LocalStorage


def fetch(storage: LocalStorage, data: bytes) -> str:
    """Bytes arriving for a known hash, as a download writes them: cached."""
    return storage.store_bytes(data, expected_sha1=sha1_of_bytes(data)).sha1


def present(storage: LocalStorage, sha1: str) -> bool:
    """On disk (without `has`, which, as a use, would refresh its recency)."""
    return storage.layout.object_path(sha1).is_file()


def origin(storage: LocalStorage, sha1: str) -> str:
    row = storage.open_index().row(sha1)
    assert row is not None
    return row[0]


def age(storage: LocalStorage, sha1: str, seconds: float) -> None:
    """Make an object's last use `seconds` ago (what time passing would do)."""
    storage.open_index().db().execute(
        "UPDATE objects SET last_used = ? WHERE sha1 = ?", (time.time() - seconds, sha1)
    )


def test_stores_are_pinned_fetches_cached_and_a_store_pins_a_cached_object(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "s")
    stored = storage.store_bytes(b"mine").sha1
    fetched = fetch(storage, b"theirs")
    big = os.urandom(3 << 20)
    fetched_big = storage.store_bytes(big, expected_sha1=sha1_of_bytes(big)).sha1
    assert origin(storage, stored) == PINNED
    assert origin(storage, fetched) == CACHED
    assert origin(storage, fetched_big) == CACHED
    storage.store_bytes(b"theirs")  # the user stores the same bytes: now it is theirs
    assert origin(storage, fetched) == PINNED
    fetch(storage, b"mine")  # fetching what is pinned keeps it pinned
    assert origin(storage, stored) == PINNED
    totals = storage.open_index().totals()
    assert totals[PINNED] == (2, 4 + 6)  # b"mine", b"theirs"
    assert totals[CACHED] == (1, len(big))


def test_link_file_pins(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "s")
    original = tmp_path / "data.bin"
    original.write_bytes(b"linked bytes")
    sha1 = storage.link_file(original).sha1
    row = storage.open_index().row(sha1)
    assert row is not None and row[0] == PINNED and row[1] == 1
    assert collect.usage(storage)["links"] == {"count": 1, "bytes": 12}


def test_objects_of_unknown_origin_count_as_pinned(tmp_path) -> None:
    """An object written by another client (no row), then fetched again: still pinned."""
    storage = LocalStorage(tmp_path / "s")
    storage.root.mkdir()
    storage.open_index()  # the index exists (empty) before the other client writes
    data = b"written by the original kachery-client"
    sha1 = sha1_of_bytes(data)
    path = storage.layout.object_path(sha1)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    assert storage.open_index().row(sha1) is None
    fetch(storage, data)
    assert origin(storage, sha1) == PINNED
    assert collect.collect(storage, 0, grace_period=0).evicted == 0
    assert path.read_bytes() == data


@pytest.mark.parametrize("damage", ["deleted", "garbage", "half-built"])
def test_a_lost_or_damaged_index_is_rebuilt_with_everything_pinned(tmp_path, damage) -> None:
    root = tmp_path / "s"
    storage = LocalStorage(root)
    pinned = [storage.store_bytes(b"p%d" % i).sha1 for i in range(5)]
    cached = [fetch(storage, b"c%d" % i) for i in range(5)]
    storage.open_index().close()
    index = root / INDEX_FILE
    for suffix in ("-wal", "-shm"):
        Path(str(index) + suffix).unlink(missing_ok=True)
    if damage == "deleted":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"this is not a database" * 100)
    else:
        conn = sqlite3.connect(index)
        conn.execute("DELETE FROM meta")
        conn.commit()
        conn.close()
    again = LocalStorage(root)
    report = collect.collect(again, 0, grace_period=0, housekeeping=True)
    assert report.evicted == 0
    for sha1 in pinned + cached:
        assert origin(again, sha1) == PINNED
        assert again.verify(sha1)
    assert again.open_index().totals()[PINNED][0] == 10
    if damage == "garbage":
        assert list(root.glob(INDEX_FILE + ".damaged-*"))


def test_gc_evicts_least_recently_used_first_and_spares_recent_and_pinned(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "s", grace_period=600)
    pins = [storage.store_bytes(b"pin %d" % i).sha1 for i in range(3)]
    cached = [fetch(storage, bytes([i]) * 100) for i in range(10)]
    for i, sha1 in enumerate(cached):
        age(storage, sha1, 10_000 - i * 100)  # cached[0] is the oldest
    age(storage, cached[0], 1)  # ... but was just loaded: inside the grace period
    pinned_bytes = collect.usage(storage)["pinned"]["bytes"]
    report = collect.collect(storage, pinned_bytes + 500)
    assert report.evicted == 5
    gone = [s for s in cached if not present(storage, s)]
    assert gone == cached[1:6]
    assert present(storage, cached[0])
    assert all(storage.verify(s) for s in pins)
    assert collect.usage(storage)["cached"] == {"count": 5, "bytes": 500}
    dry = collect.collect(storage, 0, dry_run=True)
    assert dry.evicted == 4 and all(present(storage, s) for s in cached[6:])


def test_a_load_hit_refreshes_recency(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "s")
    old = fetch(storage, b"old but used")
    other = fetch(storage, b"old, unused")
    age(storage, old, 5000)
    age(storage, other, 4000)
    LocalStorage(tmp_path / "s").find(old)  # another process loads it
    collect.collect(storage, storage.open_index().totals()[CACHED][1] - 1, grace_period=60)
    assert storage.has(old) and not storage.has(other)


def test_max_cache_size_evicts_on_write_and_warns_once_when_pins_alone_pass_it(
    tmp_path, caplog
) -> None:
    storage = LocalStorage(tmp_path / "s", max_cache_size=10_000, grace_period=0)
    first = [fetch(storage, os.urandom(1000)) for _ in range(9)]
    assert all(storage.has(s) for s in first)
    more = [fetch(storage, os.urandom(1000)) for _ in range(5)]
    totals = storage.open_index().totals()
    assert totals[CACHED][1] <= 10_000
    assert not storage.has(first[0]) and storage.has(more[-1])
    with caplog.at_level(logging.WARNING, logger="kachery.storage"):
        pins = [storage.store_bytes(os.urandom(4000)).sha1 for _ in range(3)]
        for _ in range(3):
            fetch(storage, os.urandom(1000))
    assert all(storage.verify(s) for s in pins)
    warnings = [r for r in caplog.records if "alone take" in r.getMessage()]
    assert len(warnings) == 1


def test_drop_refuses_pinned_without_force(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "s")
    pinned = storage.store_bytes(b"keep me").sha1
    cached = fetch(storage, b"drop me")
    with pytest.raises(InvalidInputError, match=pinned):
        collect.drop(storage, [pinned, cached])
    assert storage.has(pinned) and storage.has(cached)  # nothing half-done
    assert collect.drop(storage, [cached]) == [(cached, 7)]
    assert not storage.has(cached)
    assert collect.drop(storage, [pinned], force=True) == [(pinned, 7)]
    assert not storage.has(pinned)
    assert collect.usage(storage)["total"]["count"] == 0


def test_pin_and_unpin_a_directory_tree(tmp_path) -> None:
    from kachery_core.content.directory import Directory, FileEntry

    storage = LocalStorage(tmp_path / "s")
    files = {name: fetch(storage, name.encode() * 10) for name in ("a", "b", "c")}
    tree = Directory()
    tree.add_file(("a",), FileEntry(10, files["a"]))
    tree.add_file(("sub", "b"), FileEntry(10, files["b"]))
    dir_sha1 = fetch(storage, tree.to_bytes())
    uri = f"sha1dir://{dir_sha1}.tree"
    assert collect.set_pinned(storage, collect.hashes_of(storage, [uri]), True) == 3
    assert [origin(storage, files[n]) for n in "abc"] == [PINNED, PINNED, CACHED]
    sub = collect.hashes_of(storage, [uri + "/sub"])
    assert sub == [dir_sha1, files["b"]]
    collect.set_pinned(storage, collect.hashes_of(storage, [uri]), False)
    assert origin(storage, files["a"]) == CACHED
    with pytest.raises(NotFoundError):
        collect.set_pinned(storage, ["0" * 40], True)


def test_gc_removes_stale_links_and_abandoned_temporary_files(tmp_path) -> None:
    storage = LocalStorage(tmp_path / "s")
    original = tmp_path / "f.txt"
    original.write_bytes(b"v1")
    sha1 = storage.link_file(original).sha1
    kept = tmp_path / "kept.txt"
    kept.write_bytes(b"unchanged")
    kept_sha1 = storage.link_file(kept).sha1
    original.write_bytes(b"v2, changed")
    storage.temp_dir.mkdir(parents=True, exist_ok=True)
    dead = storage.temp_dir / "somehost-999999-abc.part"  # another host's: kept while young
    dead.write_bytes(b"x")
    old = storage.temp_dir / ("f" * 40 + ".download")
    old.write_bytes(b"y" * 10)
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    assert collect.usage(storage)["temporary"] == {"count": 2, "bytes": 11}
    report = collect.collect(storage, 0, housekeeping=True)
    assert report.stale_links == 1 and report.temp_files == 1
    assert not storage.layout.link_path(sha1).exists()
    assert storage.layout.link_path(kept_sha1).exists()
    assert dead.exists() and not old.exists()
    assert collect.usage(storage)["links"]["count"] == 1
