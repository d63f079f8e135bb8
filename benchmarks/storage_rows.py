"""Benchmark rows of storage bookkeeping (the index of origins and recency) and gc.

    python benchmarks/storage_rows.py                   # the issue's sizes
    python benchmarks/storage_rows.py --objects 20000   # a smaller gc store

Rows, each measured in this run against its baseline:

- load-file of a hit, `kachery-client load-file URI`, with the bookkeeping against the
  same command with it switched off (the index is never opened), same interpreter and
  start-up; also `Client.load_file` of a hit in a loop of 2,000, in process. Target 1.1x.
- `kachery-client store-file -r` of a folder of 1,000 small files into a fresh storage
  directory, with against without the bookkeeping. Target 1.1x.
- `kachery-client gc --max-size HALF` of a store of N cached objects (down to half its
  size, least recently used first) against removing the same number of objects in the
  same layout with `find DIR -type f -delete` (the files only, as gc removes them; `rm -rf`
  of that tree, which also removes every directory, is printed beside). Target 2x.
- `kachery-client usage` of that store: seconds (target < 1 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import KACHERY, Row, _print_table, measure, run_timed  # noqa: E402

_OFF = (
    "from kachery_core.store.origins import IndexedStorage\n"
    "IndexedStorage._usable_index = lambda self, writing=False: None\n"
)
_CLI = "import sys\n{}from kachery_cli.main import main\nmain(sys.argv[1:])\n"
WITH = [sys.executable, "-c", _CLI.format("")]
WITHOUT = [sys.executable, "-c", _CLI.format(_OFF)]

_LOOP = """
import sys, time
{}import kachery_client as kc
c = kc.Client(backend="local")
uri = sys.argv[1]
c.load_file(uri)
t = time.perf_counter()
for _ in range(2000):
    c.load_file(uri)
print(time.perf_counter() - t)
"""


def hit_rows(work: Path, env: Dict[str, str], repeats: int) -> List[Row]:
    storage = work / "hit-storage"
    env = dict(env, KACHERY_STORAGE_DIR=str(storage))
    src = work / "hit.bin"
    src.write_bytes(os.urandom(100_000))
    import subprocess

    uri = subprocess.run(
        [KACHERY, "store-file", str(src)], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    rows = [
        measure(
            "load-file hit, bookkeeping on/off",
            lambda i: [*WITH, "load-file", uri],
            "the same, bookkeeping off",
            lambda i: [*WITHOUT, "load-file", uri],
            1.1,
            repeats * 4,
            env,
        )
    ]
    loops: Dict[str, List[float]] = {"on": [], "off": []}
    for _ in range(repeats):
        for side, patch in (("on", ""), ("off", _OFF)):
            out = subprocess.run(
                [sys.executable, "-c", _LOOP.format(patch), uri],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            loops[side].append(float(out))
    on, off = statistics.median(loops["on"]), statistics.median(loops["off"])
    rows.append(Row("Client.load_file hit x2000", on, "bookkeeping off", off, on / off, 1.1, 0.0))
    return rows


def store_tree_row(work: Path, env: Dict[str, str], repeats: int) -> Row:
    folder = work / "small-files"
    folder.mkdir()
    for i in range(1000):
        (folder / f"f{i:04d}.txt").write_bytes(b"small file %d\n" % i + os.urandom(100))
    runs = [0]

    def fresh() -> None:
        runs[0] += 1
        target = work / "tree-storage"
        shutil.rmtree(target, ignore_errors=True)
        env["KACHERY_STORAGE_DIR"] = str(target)

    return measure(
        "store-file -r 1,000 files, bookkeeping on/off",
        lambda i: [*WITH, "store-file", "-r", str(folder)],
        "the same, bookkeeping off",
        lambda i: [*WITHOUT, "store-file", "-r", str(folder)],
        1.1,
        repeats,
        env,
        before_each=fresh,
    )


def fill_cached(root: Path, count: int, size: int = 1000) -> None:
    """`count` cached objects, oldest first, written directly with their index rows."""
    import hashlib

    from kachery_core.store.local import LocalStorage

    storage = LocalStorage(root)
    root.mkdir(parents=True, exist_ok=True)
    conn = storage.open_index().db()
    now = time.time() - 86400
    rows = []
    for i in range(count):
        data = b"%08d" % i + os.urandom(size - 8)
        sha1 = hashlib.sha1(data).hexdigest()
        path = storage.layout.object_path(sha1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append((sha1, "cached", 0, size, now + i))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO objects VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    storage.open_index().close()


def fill_plain(root: Path, count: int, size: int = 1000) -> None:
    """The same layout, `count` objects, no index: what `rm -rf` removes."""
    import hashlib

    for i in range(count):
        data = b"%08d" % i + os.urandom(size - 8)
        h = hashlib.sha1(data).hexdigest()
        path = root / "sha1" / h[0:2] / h[2:4] / h[4:6] / h
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def gc_rows(work: Path, env: Dict[str, str], count: int, repeats: int) -> List[Row]:
    gc_times, rm_times, rmrf_times, usage_times = [], [], [], []
    for r in range(repeats):
        store = work / f"gc-store-{r}"
        plain = work / f"rm-store-{r}"
        fill_cached(store, count)
        fill_plain(plain, count // 2)
        fill_plain(work / f"rmrf-store-{r}", count // 2)
        run_env = dict(env, KACHERY_STORAGE_DIR=str(store), KACHERY_GC_GRACE_SECONDS="0")
        os.sync()  # the fill's writeback done before any side is timed
        seconds, _ = run_timed([KACHERY, "usage"], run_env)
        usage_times.append(seconds)
        half = str(count * 1000 // 2)
        os.sync()
        seconds, _ = run_timed([KACHERY, "gc", "--max-size", half], run_env)
        gc_times.append(seconds)
        os.sync()
        seconds, _ = run_timed(["find", str(plain / "sha1"), "-type", "f", "-delete"], env)
        rm_times.append(seconds)
        os.sync()
        seconds, _ = run_timed(["rm", "-rf", str(work / f"rmrf-store-{r}" / "sha1")], env)
        rmrf_times.append(seconds)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(plain, ignore_errors=True)
        shutil.rmtree(work / f"rmrf-store-{r}", ignore_errors=True)
    gc, rm = statistics.median(gc_times), statistics.median(rm_times)
    rmrf, usage = statistics.median(rmrf_times), statistics.median(usage_times)
    return [
        Row(
            f"gc {count:,} cached to half",
            gc,
            f"find -delete {count // 2:,}",
            rm,
            gc / rm,
            2.0,
            0.0,
        ),
        Row(f"gc {count:,} cached to half", gc, "rm -rf of that tree", rmrf, gc / rmrf, 2.0, 0.0),
        Row(f"usage of {count:,} objects", usage, "1 s", 1.0, usage, 1.0, 0.0),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kachery-storage-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
    env.update(
        KACHERY_CONFIG=str(work / "config.toml"),
        KACHERY_SYSTEM_CONFIG=str(work / "none.toml"),
        KACHERY_BACKEND="local",
        XDG_CACHE_HOME=str(work / "cache"),
    )
    try:
        rows = hit_rows(work, env, args.repeats)
        rows.append(store_tree_row(work, dict(env), args.repeats))
        rows += gc_rows(work, env, args.objects, max(1, args.repeats // 3))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
