"""Benchmark row of the `grpc` backend: a load over gRPC into an empty client cache vs cp.

The node runs with `--grpc-port`; the client's storage dir is its own cache, so every byte
crosses the socket and is hash-checked before the object appears. The node's peak RSS is
printed beside the table (the row's RSS is the client's).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List

from run import KACHERY, Row, free_port, measure

BIN = Path(sys.executable).parent


def grpc_rows(work: Path, data: Path, env: Dict[str, str], repeats: int) -> List[Row]:
    storage = work / "grpc-node-storage"
    http_port, grpc_port = free_port(), free_port()
    node_env = dict(env, KACHERY_DAEMON_PORT=str(http_port), KACHERY_STORAGE_DIR=str(storage))
    node = subprocess.Popen(
        [str(BIN / "kachery-daemon"), "start", "--port", str(http_port)]
        + ["--grpc-port", str(grpc_port), "--storage-dir", str(storage)],
        env=node_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(http_port)
        # The node ingests the file by path (http backend): quick, and not what is measured.
        uri = subprocess.run(
            [KACHERY, "store-file", str(data)],
            env=node_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        cache, copy = work / "grpc-cache", work / "grpc-copy.bin"
        client_env = dict(
            env,
            KACHERY_TRANSPORT="grpc",
            KACHERY_DAEMON_HOST="127.0.0.1",
            KACHERY_GRPC_PORT=str(grpc_port),
            KACHERY_STORAGE_DIR=str(cache),
            KACHERY_AUTH_CODE_FILE=str(storage / "client-auth"),
        )

        def empty_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)
            if copy.exists():
                copy.unlink()

        row = measure(
            "load via grpc",
            lambda i: [KACHERY, "load-file", uri],
            "cp",
            lambda i: ["cp", str(data), str(copy)],
            2.5,
            repeats,
            client_env,
            before_each=empty_cache,
        )
        empty_cache()
        print(f"load via grpc: node peak RSS {_peak_rss_mib(node.pid):.1f} MiB")
        # The client imports grpc (~40 MiB before any transfer), as the remote row's does requests.
        return [dataclasses.replace(row, rss_target_mib=100.0)]
    finally:
        node.terminate()
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def _wait_for(port: int) -> None:
    """The node answers the HTTP probe only once its gRPC server is up too."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/probe", timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the node with --grpc-port did not start")


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
