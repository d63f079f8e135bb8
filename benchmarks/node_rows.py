"""Benchmark rows that need a running node (the `http` backend), measured in the same run."""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from run import KACHERY, Row, free_port, measure, remove_tree
from tool_venv import original_client_venv

BIN = Path(sys.executable).parent


class Node:
    """A `kachery-daemon` for the benchmark; it answers the probe once every server is up."""

    def __init__(self, storage: Path, env: Dict[str, str], *extra_args: str) -> None:
        self.port = int(env["KACHERY_DAEMON_PORT"])
        self.storage = storage
        self.proc = subprocess.Popen(
            [
                str(BIN / "kachery-daemon"),
                "start",
                "--port",
                str(self.port),
                "--storage-dir",
                str(storage),
                *extra_args,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/probe", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("the node did not start")

    def peak_rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def node_rows(
    work: Path, data: Path, env: Dict[str, str], repeats: int, startup_repeats: int
) -> List[Row]:
    storage = work / "node-storage"
    env = dict(env, KACHERY_DAEMON_PORT=str(free_port()), KACHERY_STORAGE_DIR=str(storage))
    node = Node(storage, env)
    rows: List[Row] = []
    copies = work / "node-copies"
    try:

        def fresh() -> None:
            remove_tree(storage / "sha1")
            remove_tree(copies)
            copies.mkdir()

        rows.append(
            measure(
                "store-file via node",
                lambda i: [KACHERY, "store-file", str(data)],
                "cp",
                lambda i: ["cp", str(data), str(copies / "data.bin")],
                1.5,
                repeats,
                env,
                before_each=fresh,
            )
        )
        uri = subprocess.run(
            [KACHERY, "store-file", str(data)], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        venv = original_client_venv()
        if venv is not None:
            rows.append(
                measure(
                    "load-file via node",
                    lambda i: [KACHERY, "load-file", uri],
                    # what the original kachery-load wrapper execs, without the shell
                    "original load-file",
                    lambda i: [str(venv / "bin" / "kachery-client"), "load-file", uri],
                    0.6,
                    startup_repeats,
                    env,
                )
            )
        rows.append(_remote_load(work, data, env, uri, repeats, storage))
        rows.append(small_file_round_trips(node, "http", {"storage_dir": str(node.storage)}))
        token = _token(storage)
        rows.append(
            small_file_round_trips(
                node, "remote", {"transport": "remote", "auth_token": token}, work / "rt-cache"
            )
        )
    finally:
        node.stop()
    return rows


def _token(storage: Path) -> str:
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from kachery_daemon.tokens import TokenStore

    return TokenStore(storage).create(f"benchmark {os.getpid()} {time.time()}")[1]


def _remote_load(
    work: Path, data: Path, env: Dict[str, str], uri: str, repeats: int, storage: Path
) -> Row:
    """1 GiB over the connection into an empty client cache, hash check included, vs the
    hashing floor."""
    cache = work / "remote-cache"
    remote_env = dict(
        env,
        KACHERY_TRANSPORT="remote",
        KACHERY_STORAGE_DIR=str(cache),
        KACHERY_AUTH_TOKEN=_token(storage),
    )
    return load_into_empty_cache("load via remote", uri, data, cache, remote_env, repeats)


LOAD_TARGET = 1.5
"""A load into an empty cache: at most this multiple of the hashing floor (`floor.py`)."""
LOAD_RSS_TARGET_MIB = 64.0


def load_into_empty_cache(
    name: str, uri: str, data: Path, cache: Path, env: Dict[str, str], repeats: int
) -> Row:
    """`load-file` into an emptied client cache (so every byte travels), as a multiple of
    the hashing floor measured in the same run; `cp` of the file is timed beside it and
    printed for reference."""
    copy = cache.with_name(cache.name + "-copy.bin")

    def empty_cache() -> None:
        remove_tree(cache)
        if copy.exists():
            copy.unlink()

    row = measure(
        name,
        lambda i: [KACHERY, "load-file", uri],
        "cp",
        lambda i: ["cp", str(data), str(copy)],
        LOAD_TARGET,
        repeats,
        env,
        before_each=empty_cache,
    )
    empty_cache()
    floor = hashing_floor_in_child(data)
    print(
        f"{name}: {row.kachery_seconds:.3f} s, cp {row.baseline_seconds:.3f} s "
        f"({row.ratio:.2f}x cp), hashing floor {floor:.3f} s ({row.kachery_seconds / floor:.2f}x)"
    )
    return dataclasses.replace(
        row,
        baseline="hashing floor",
        baseline_seconds=floor,
        ratio=row.kachery_seconds / floor,
        rss_target_mib=LOAD_RSS_TARGET_MIB,
    )


def hashing_floor_in_child(data: Path) -> float:
    """`floor.hashing_floor_seconds(data)`, run in a child process.

    Its mmap makes the page-cached file part of the measuring process's RSS for a moment,
    and a process started later by a fork inherits that peak in its own peak RSS (Linux
    carries the high-water mark through fork and exec): in the driver, every row measured
    afterwards would report over 1 GiB.
    """
    script = Path(__file__).with_name("floor.py")
    out = subprocess.run(
        [sys.executable, str(script), str(data)], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def small_file_round_trips(
    node: Node,
    label: str,
    settings: Dict[str, str],
    cache_root: Optional[Path] = None,
    clients: int = 8,
    seconds: float = 5.0,
) -> Row:
    """Store+load of small files from 8 concurrent clients: rate, p99 latency, node RSS."""
    sys.path.insert(0, str(Path(__file__).parent.parent))
    import kachery_client as kc

    latencies: List[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def work(index: int) -> None:
        own = {} if cache_root is None else {"storage_dir": str(cache_root / str(index))}
        client = kc.Client(daemon_port=node.port, **dict(settings, **own))
        n = 0
        while time.monotonic() < stop_at:
            data = f"client {index} round trip {n}".encode()
            started = time.perf_counter()
            uri = client.store_bytes(data)
            assert client.load_bytes(uri) == data
            with lock:
                latencies.append(time.perf_counter() - started)
            n += 1
        client.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    rate = len(latencies) / seconds
    print(
        f"small files via {label}, {clients} clients: {rate:.0f} store+load round trips/s, median {1000 * statistics.median(latencies):.1f} ms, "
        f"p99 {1000 * p99:.1f} ms, node peak RSS {node.peak_rss_mib():.1f} MiB"
    )
    # kachery s is the p99 latency; "base s" the median latency, labelled with the rate.
    median = statistics.median(latencies)
    return Row(
        f"{label} round trip x{clients} (p99)",
        p99,
        f"median, {rate:.0f}/s",
        median,
        p99 / median,
        None,
        node.peak_rss_mib(),
        100.0,
    )
