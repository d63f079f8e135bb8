"""gc under fire: real processes killed with SIGKILL mid-collection, two collections at
once, and stores racing a collection. Nothing pinned is ever lost; the index stays true."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from kachery_core.content.hashing import sha1_of_bytes
from kachery_core.store import collect
from kachery_core.store.index import CACHED, PINNED, walk
from kachery_core.store.local import LocalStorage

GC = (
    "import sys; from pathlib import Path; from kachery_core.store.local import LocalStorage;"
    "from kachery_core.store.collect import collect;"
    "r = collect(LocalStorage(Path(sys.argv[1]), grace_period=0), int(sys.argv[2]),"
    " housekeeping=True); print(r.evicted, flush=True)"
)
GC_LOOP = (
    "import sys, time; from pathlib import Path; from kachery_core.store.local import LocalStorage;"
    "from kachery_core.store.collect import collect;"
    "s = LocalStorage(Path(sys.argv[1]), grace_period=0); end = time.time() + 60\n"
    "while time.time() < end: collect(s, 0)"
)


def fill(root: Path, cached: int, pinned: int) -> Tuple[List[str], List[str]]:
    """A store of `cached` fetched and `pinned` stored small objects (one transaction)."""
    storage = LocalStorage(root)
    storage.root.mkdir(parents=True, exist_ok=True)
    conn = storage.open_index().db()
    conn.execute("BEGIN")
    cached_sha1s = []
    for i in range(cached):
        data = b"cached %d" % i
        cached_sha1s.append(storage.store_bytes(data, expected_sha1=sha1_of_bytes(data)).sha1)
    pinned_sha1s = [storage.store_bytes(b"pinned %d" % i).sha1 for i in range(pinned)]
    conn.execute("COMMIT")
    return cached_sha1s, pinned_sha1s


def rows(storage: LocalStorage) -> Dict[str, Tuple[str, int]]:
    conn = storage.open_index().db()
    return {s: (o, size) for s, o, size in conn.execute("SELECT sha1, origin, size FROM objects")}


def check_consistent(storage: LocalStorage, pinned: List[str], healed: bool) -> None:
    """Pins whole; every object on disk has its row; the totals match the rows; rows of
    missing objects only cached ones (and none once a collection healed them)."""
    conn = storage.open_index().db()
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for sha1 in pinned:
        assert storage.verify(sha1), sha1
    on_disk = {sha1 for sha1, link, _ in walk(storage.root) if not link}
    indexed = rows(storage)
    assert on_disk <= set(indexed)
    missing = set(indexed) - on_disk
    assert all(indexed[s][0] == CACHED for s in missing)
    if healed:
        assert not missing
    totals = storage.open_index().totals()
    for origin in (PINNED, CACHED):
        mine = [size for o, size in indexed.values() if o == origin]
        assert totals[origin] == (len(mine), sum(mine))


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, List[str], List[str]]:
    """A store of 10,000 cached and 200 pinned objects, filled once for the SIGKILL tests:
    a fill costs several CPU-seconds, a copy of it a fraction, and each test kills its
    collection in a copy of its own (the same files, rows and last-use times)."""
    root = tmp_path_factory.mktemp("filled") / "s"
    cached, pinned = fill(root, 10_000, 200)
    index = LocalStorage(root).open_index()
    index.db().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the main file
    index.close()
    return root, cached, pinned


@pytest.mark.parametrize("left", [0.9, 0.5, 0.1])
def test_sigkill_during_gc_leaves_a_consistent_store_and_index(tmp_path, filled, left) -> None:
    """Killed once `left` of the cached objects remain (watched through the index)."""
    root = tmp_path / "s"
    shutil.copytree(filled[0], root)
    cached, pinned = filled[1], filled[2]
    watch = LocalStorage(root).open_index()
    proc = subprocess.Popen([sys.executable, "-c", GC, str(root), "0"], stdout=subprocess.PIPE)
    try:
        while proc.poll() is None and watch.totals()[CACHED][0] > left * len(cached):
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # it was killed, not finished
    storage = LocalStorage(root, grace_period=0)
    remaining = sum(1 for s in cached if storage.layout.object_path(s).exists())
    assert 0 < remaining < len(cached)  # mid-collection
    check_consistent(storage, pinned, healed=False)
    collect.collect(storage, 0)  # the next collection finishes the job
    check_consistent(storage, pinned, healed=True)
    assert storage.open_index().totals()[CACHED] == (0, 0)


def test_two_collections_at_once_evict_each_object_once(tmp_path) -> None:
    root = tmp_path / "s"
    cached, pinned = fill(root, 3000, 100)
    procs = [
        subprocess.Popen([sys.executable, "-c", GC, str(root), "0"], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    counts = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        counts.append(int(out))
    assert sum(counts) == len(cached)
    storage = LocalStorage(root)
    check_consistent(storage, pinned, healed=True)


def test_stores_racing_a_collection_are_never_lost(tmp_path) -> None:
    """A collection evicting every cached object in a loop, while this process fetches
    objects (cached) and then stores the same bytes (pinned): each store keeps its object."""
    root = tmp_path / "s"
    storage = LocalStorage(root, grace_period=0)
    storage.store_bytes(b"first")
    proc = subprocess.Popen([sys.executable, "-c", GC_LOOP, str(root)])
    try:
        stored = []
        for i in range(400):
            data = b"object %d" % i + os.urandom(16)
            storage.store_bytes(data, expected_sha1=sha1_of_bytes(data))
            sha1 = storage.store_bytes(data).sha1
            assert storage.layout.object_path(sha1).read_bytes() == data
            stored.append(sha1)
        assert proc.poll() is None  # the collection ran all along
    finally:
        proc.kill()
        proc.wait(timeout=30)
    for sha1 in stored:
        assert storage.verify(sha1)
    check_consistent(storage, stored, healed=False)
