"""Many clients at once against one real node, with the auth code rotating under them."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Dict, List

from kachery_core.store.layout import StorageLayout

CLIENTS = 32
FILES_EACH = 200


def test_32_clients_store_and_load(make_node, kenv, tmp_path: Path) -> None:
    started = make_node("--auth-rotate-seconds", "0.5", "--allow-short-rotation")
    import kachery_client as kc

    shared = os.urandom(100_000)
    shared_sha1 = hashlib.sha1(shared).hexdigest()
    errors: List[str] = []
    counts: Dict[int, int] = {}
    codes_seen = set()
    stop_watching = threading.Event()

    def watch_rotation() -> None:
        while not stop_watching.is_set():
            codes_seen.add(started.auth_code())
            time.sleep(0.05)

    def client_work(index: int) -> None:
        try:
            client = kc.Client(daemon_port=started.port, storage_dir=str(started.storage_dir))
            assert client.selection.name == "http"
            uris = []
            for i in range(FILES_EACH):
                data = f"client {index} file {i} ".encode() * (1 + i % 7)
                uris.append((client.store_bytes(data, f"f{i}.txt"), data))
            shared_uri = client.store_bytes(shared, "shared.bin")
            assert shared_uri == f"sha1://{shared_sha1}/shared.bin"
            for uri, data in uris:
                assert client.load_bytes(uri) == data, uri
            assert client.load_bytes(shared_uri) == shared
            counts[index] = len(uris)
            client.close()
        except Exception as exc:  # collected, so every thread's failure is reported
            errors.append(f"client {index}: {type(exc).__name__}: {exc}")

    watcher = threading.Thread(target=watch_rotation)
    watcher.start()
    begin = time.monotonic()
    threads = [threading.Thread(target=client_work, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    elapsed = time.monotonic() - begin
    stop_watching.set()
    watcher.join()
    assert errors == []
    assert sum(counts.values()) == CLIENTS * FILES_EACH
    assert len(codes_seen) >= 3, "the auth code should have rotated during the load"
    assert StorageLayout(started.storage_dir).object_path(shared_sha1).read_bytes() == shared
    rss = started.peak_rss_mib()
    ops = 2 * CLIENTS * (FILES_EACH + 1)
    print(
        f"\n{ops} store+load requests in {elapsed:.1f} s ({ops / elapsed:.0f}/s), node peak RSS {rss:.1f} MiB, {len(codes_seen)} auth codes"
    )
    assert rss < 200
    assert list((started.storage_dir / "tmp").glob("*.part")) == []
