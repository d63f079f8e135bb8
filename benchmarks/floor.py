"""The hashing floor: the least time any store of a large file can take on this CPU.

A file over 20,000,000 bytes needs two SHA-1s: of the whole file, and of each
20,000,000-byte chunk (for its manifest). The floor is the wall time of computing both at
once, on two threads of one process, straight from the page-cached file through `mmap`
(no read copies), with nothing else: no write, no process start. No implementation can
beat it here, so the store and load rows are reported as multiples of it.

    python benchmarks/floor.py FILE          # prints the floor in seconds
"""

from __future__ import annotations

import hashlib
import mmap
import sys
import threading
import time
from pathlib import Path
from typing import List

CHUNK_SIZE = 20_000_000


def hashing_floor_seconds(path: Path, repeats: int = 3) -> float:
    """The best of `repeats` runs (the file is read once first, to warm the page cache)."""
    _whole_sha1(path)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        both_hashes(path)
        best = min(best, time.perf_counter() - started)
    return best


def both_hashes(path: Path) -> None:
    """The whole-file SHA-1 and the chunk SHA-1s, on two threads at once."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        chunk_hashes: List[str] = []

        def chunks() -> None:
            for start in range(0, len(view), CHUNK_SIZE):
                chunk_hashes.append(hashlib.sha1(view[start : start + CHUNK_SIZE]).hexdigest())

        worker = threading.Thread(target=chunks)
        worker.start()
        hashlib.sha1(view).hexdigest()
        worker.join()
        view.release()


def _whole_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    print(f"{hashing_floor_seconds(Path(sys.argv[1])):.3f}")
