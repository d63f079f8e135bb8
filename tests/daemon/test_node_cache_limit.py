"""A node at its `--max-cache-size` keeps serving channel fetches and lazy reads while it
evicts: least recently used cached objects go first, pinned ones never."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from channel_fixtures import BIG, Lab
from conftest import write_random_file
from node_fixtures import make_token

import kachery_client as kc
from kachery_core.content.hashing import sha1_of_bytes
from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.store.local import LocalStorage

LIMIT = 60_000_000
FILLER = 4000  # old cached objects of 4,000 bytes: 16 MB


def test_a_node_at_its_limit_serves_channel_fetches_and_lazy_reads_while_it_evicts(
    lab: Lab, cli, tmp_path: Path
) -> None:
    lab.kenv["KACHERY_GC_GRACE_SECONDS"] = "30"  # what it fetches now stays; the old goes
    a = lab.node("a")
    files = [write_random_file(tmp_path / f"f{i}.bin", 1_000_000, seed=40 + i) for i in range(8)]
    big = write_random_file(tmp_path / "big.bin", BIG, seed=50)
    uris = []
    for path in [*files, big]:
        stored = cli("store-file", str(path), "--upload-to-channel", "lab", env=lab.env(a))
        assert stored.returncode == 0, stored
        uris.append(stored.stdout.strip())
    # b's storage before it starts: its own pinned files, and an old cache near the limit.
    b_dir = tmp_path / "b-storage"
    storage = LocalStorage(b_dir)
    mine = [storage.store_bytes(os.urandom(1_000_000)).sha1 for _ in range(5)]
    filler = []
    conn = storage.open_index().db()
    conn.execute("BEGIN")
    for i in range(FILLER):
        data = b"%06d" % i + os.urandom(3994)
        filler.append(storage.store_bytes(data, expected_sha1=sha1_of_bytes(data)).sha1)
    conn.execute("UPDATE objects SET last_used = ? WHERE origin = 'cached'", (time.time() - 3600,))
    conn.execute("COMMIT")
    b = lab.make_node(
        "--config", str(lab.config("b")), "--max-cache-size", str(LIMIT), storage_dir=b_dir
    )
    token = make_token(b, "laptop")
    with kc.Client(
        backend="remote",
        daemon_port=b.port,
        storage_dir=str(tmp_path / "laptop-cache"),
        auth_token=token,
        channel="lab",
    ) as laptop:
        data = big.read_bytes()
        with laptop.open(uris[-1]) as f:  # a lazy read: the node fetches the big file
            f.seek(CHUNK_SIZE + 77)
            assert f.read(5000) == data[CHUNK_SIZE + 77 : CHUNK_SIZE + 5077]
            for path, uri in zip(files, uris):  # channel fetches while it is over the limit
                assert laptop.load_bytes(uri) == path.read_bytes()
                f.seek(BIG - 1000)
                assert f.read() == data[-1000:]
        assert laptop.usage()["cached"]["count"] >= 1  # the laptop's pieces are cached
    deadline = time.monotonic() + 30
    while True:
        seen = cli("usage", "--json", "--storage-dir", str(b_dir), program="kachery-daemon")
        assert seen.returncode == 0, seen
        figures = json.loads(seen.stdout)
        total = figures["pinned"]["bytes"] + figures["cached"]["bytes"]
        if total <= LIMIT or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert total <= LIMIT, figures
    assert all(storage.verify(sha1) for sha1 in mine)  # pins stay
    gone = sum(1 for sha1 in filler if not storage.layout.object_path(sha1).exists())
    assert gone > FILLER // 2  # the old cache made room
    assert figures["pinned"]["count"] == len(mine)
