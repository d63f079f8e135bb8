"""Benchmark row of the `grpc` backend: a load over gRPC into an empty client cache, as a
multiple of the hashing floor (cp printed beside it).

The node runs with `--grpc-port`; the client's storage dir is its own cache, so every byte
crosses the socket and is hash-checked before the object appears. The node's peak RSS is
printed beside the table (the row's RSS is the client's); then the small-file round trips.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, List

from node_rows import Node, load_into_empty_cache, small_file_round_trips
from run import KACHERY, Row, free_port


def grpc_rows(work: Path, data: Path, env: Dict[str, str], repeats: int) -> List[Row]:
    storage = work / "grpc-node-storage"
    http_port, grpc_port = free_port(), free_port()
    node_env = dict(env, KACHERY_DAEMON_PORT=str(http_port), KACHERY_STORAGE_DIR=str(storage))
    node = Node(storage, node_env, "--grpc-port", str(grpc_port))
    try:
        # The node ingests the file by path (http backend): quick, and not what is measured.
        uri = subprocess.run(
            [KACHERY, "store-file", str(data)],
            env=node_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        cache = work / "grpc-cache"
        client_env = dict(
            env,
            KACHERY_TRANSPORT="grpc",
            KACHERY_DAEMON_HOST="127.0.0.1",
            KACHERY_GRPC_PORT=str(grpc_port),
            KACHERY_STORAGE_DIR=str(cache),
            KACHERY_AUTH_CODE_FILE=str(storage / "client-auth"),
        )
        row = load_into_empty_cache("load via grpc", uri, data, cache, client_env, repeats)
        print(f"load via grpc: node peak RSS {node.peak_rss_mib():.1f} MiB")
        settings = {
            "transport": "grpc",
            "daemon_host": "127.0.0.1",
            "grpc_port": str(grpc_port),
            "auth_code_file": str(storage / "client-auth"),
        }
        round_trips = small_file_round_trips(node, "grpc", settings, work / "grpc-rt-cache")
        return [row, round_trips]
    finally:
        node.stop()
