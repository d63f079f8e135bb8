"""Benchmark rows of lazy reads (`kc.open`, fsspec) through a node over `remote`.

Each row starts with an empty client cache; bytes are those the node reports sending
(`downloadedBytes` in its /stats), so they count exactly what crossed the connection.

- h5py: one 1 MB dataset from a 1 GiB HDF5 file written with default settings
  (target: at most 3 x 20,000,000 bytes; the chunks holding its metadata and data);
- 100 random 64 KiB reads of a 1 GiB file (target: only the distinct chunks touched),
  then the same reads again (target: nothing);
- a sequential read of the 1 GiB file through `fsspec.open` against `load_file` plus
  reading the local copy (target <= 1.2x);
- `pd.read_csv` of a stored CSV by URI against `pd.read_csv(kc.load_file(uri))`
  (target <= 1.2x).

    python benchmarks/lazy_rows.py                       # 1 GiB files, 200 MB CSV
    python benchmarks/lazy_rows.py --size-mib 128 --csv-mib 20

Not run in CI (the sizes make it minutes long); the table goes in the closing note.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_rows import Node, _token  # noqa: E402
from run import _write_random, free_port, remove_tree  # noqa: E402

CHUNK = 20_000_000


def _sent(node: Node) -> int:
    code = (node.storage / "client-auth").read_text().strip()
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    conn.request("GET", "/stats", headers={"KACHERY-CLIENT-AUTH-CODE": code})
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return int(doc["stats"].get("downloadedBytes", 0))


def _timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _paired(a: Callable[[], object], b: Callable[[], object], repeats: int) -> Tuple[float, float]:
    """Median times of `a` and `b`, run alternately (each once untimed first)."""
    a(), b()
    times_a: List[float] = []
    times_b: List[float] = []
    for _ in range(repeats):
        times_a.append(_timed(a))
        times_b.append(_timed(b))
    return statistics.median(times_a), statistics.median(times_b)


def lazy_rows(
    work: Path, size: int, csv_size: int, repeats: int
) -> List[Tuple[str, str, str, str]]:
    import h5py
    import numpy as np
    import pandas as pd

    import kachery_client as kc

    storage = work / "node-storage"
    env = dict(os.environ, KACHERY_DAEMON_PORT=str(free_port()), KACHERY_STORAGE_DIR=str(storage))
    node = Node(storage, env, "--host", "127.0.0.1")
    rows: List[Tuple[str, str, str, str]] = []
    try:
        token = _token(storage)
        at_node = kc.Client(backend="local", storage_dir=str(storage))
        caches = iter(range(1000))

        def remote() -> kc.Client:
            cache = work / f"cache-{next(caches)}"
            return kc.Client(
                backend="remote", daemon_port=node.port, storage_dir=str(cache), auth_token=token
            )

        # -- h5py: one 1 MB dataset of a 1 GiB file -------------------------------------
        h5 = work / "session.h5"
        with h5py.File(h5, "w") as f:
            raw = f.create_dataset("raw", shape=(size - (1 << 20),), dtype="u1")
            for start in range(0, raw.shape[0], 64 << 20):
                n = min(64 << 20, raw.shape[0] - start)
                raw[start : start + n] = np.frombuffer(os.urandom(n), dtype="u1")
            f["units/rates"] = np.arange(125_000, dtype="f8")
        h5_uri = at_node.store_file(h5)
        before = _sent(node)
        with remote() as c, c.open(h5_uri) as handle, h5py.File(handle, "r") as f:
            seconds = _timed(lambda: f["units/rates"][:])
        moved = _sent(node) - before
        rows.append(
            (
                f"h5py 1 MB dataset of a {size >> 20} MiB file",
                f"{moved:,} bytes ({moved / CHUNK:.2f} chunks), {seconds:.2f} s",
                "<= 3 x 20,000,000 bytes",
                "ok" if moved <= 3 * CHUNK + 10_000 else "MISSED",
            )
        )

        # -- random reads ---------------------------------------------------------------
        data = work / "data.bin"
        _write_random(data, size)
        uri = at_node.store_file(data)
        rng = random.Random(0)
        offsets = [rng.randrange(0, size - 65536) for _ in range(100)]
        touched = {o // CHUNK for o in offsets} | {(o + 65535) // CHUNK for o in offsets}
        expected = sum(min(CHUNK, size - i * CHUNK) for i in touched)
        client = remote()
        before = _sent(node)

        def reads() -> None:
            with client.open(uri) as f:
                for o in offsets:
                    f.seek(o)
                    f.read(65536)

        first = _timed(reads)
        moved = _sent(node) - before
        before = _sent(node)
        again = _timed(reads)
        repeat = _sent(node) - before
        client.close()
        rows.append(
            (
                "100 random 64 KiB reads",
                f"{moved:,} bytes ({len(touched)} chunks), {first:.2f} s",
                f"the {len(touched)} chunks touched: {expected:,} bytes (+ manifest)",
                "ok" if expected <= moved <= expected + 100_000 else "MISSED",
            )
        )
        rows.append(
            (
                "the same reads again",
                f"{repeat:,} bytes, {again:.3f} s",
                "0 bytes",
                "ok" if repeat == 0 else "MISSED",
            )
        )

        # -- sequential read vs load_file -----------------------------------------------
        import fsspec

        def through_fsspec() -> None:
            options = {
                "backend": "remote",
                "port": node.port,
                "token": token,
                "storage_dir": str(work / f"cache-{next(caches)}"),
            }
            with fsspec.open(uri, "rb", **options) as f:
                while f.read(4 << 20):
                    pass

        def load_then_read() -> None:
            with remote() as c, open(c.load_file(uri), "rb") as f:
                while f.read(4 << 20):
                    pass

        lazy, whole = _paired(through_fsspec, load_then_read, repeats)
        rows.append(
            (
                "sequential read via fsspec.open",
                f"{lazy:.2f} s vs load_file+read {whole:.2f} s: {lazy / whole:.2f}x",
                "<= 1.2x",
                "ok" if lazy <= 1.2 * whole else "MISSED",
            )
        )

        # -- read_csv -------------------------------------------------------------------
        csv = work / "units.csv"
        per_row = 60
        frame = pd.DataFrame(np.random.default_rng(0).random((csv_size // per_row, 3)))
        frame.to_csv(csv, index=False)
        csv_uri = at_node.store_file(csv)
        options = {"backend": "remote", "port": node.port, "token": token}

        def by_uri() -> None:
            cache = str(work / f"cache-{next(caches)}")
            pd.read_csv(csv_uri, storage_options=dict(options, storage_dir=cache))

        def by_load() -> None:
            with remote() as c:
                pd.read_csv(c.load_file(csv_uri))

        lazy, whole = _paired(by_uri, by_load, repeats)
        rows.append(
            (
                f"pd.read_csv of {csv.stat().st_size >> 20} MiB by URI",
                f"{lazy:.2f} s vs read_csv(load_file) {whole:.2f} s: {lazy / whole:.2f}x",
                "<= 1.2x",
                "ok" if lazy <= 1.2 * whole else "MISSED",
            )
        )
        return rows
    finally:
        node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--csv-mib", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kachery-bench-lazy-"))
    print("(each timed row: median of --repeats, both sides alternated; every client cache empty)")
    os.environ.update(
        KACHERY_CONFIG=str(work / "config.toml"),
        KACHERY_SYSTEM_CONFIG=str(work / "system-config.toml"),
    )
    try:
        rows = lazy_rows(work, args.size_mib << 20, args.csv_mib * 1_000_000, args.repeats)
    finally:
        remove_tree(work)
    width = max(len(r[0]) for r in rows)
    for name, measured, target, verdict in rows:
        print(f"{name:<{width}}  {measured}  [target {target}]  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
