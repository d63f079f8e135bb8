"""Benchmark rows of verified reads: `cat-file` through a node, hash-checked as it streams.

Each row compares `kachery-client cat-file URI > /dev/null` (every byte hashed beside the
copy) with what it costs at the least: the same read without verification (the backend's
`open_range` copied straight to stdout, as cat-file did before it checked) run at the same
time as one SHA-1 pass (hashlib) over the object, overlapped. Target: <= 1.2x that.

    python benchmarks/verified_rows.py --size-mib 1024     # these rows alone
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from node_rows import Node, _token
from run import KACHERY, Row, _print_table, _write_random, free_port, measure, remove_tree

UNVERIFIED_READ = (
    "import sys\n"
    "from kachery_cli.output import copy_to_fd\n"
    "from kachery_client.client import Client\n"
    "from kachery_core.content.uri import parse_uri\n"
    "with Client().transport.open_range(parse_uri(sys.argv[1])) as stream:\n"
    "    copy_to_fd(stream, 1)\n"
)


SHA1_PASS = (
    "import hashlib, sys\n"
    "digest, block = hashlib.sha1(), bytearray(4 << 20)\n"
    "with open(sys.argv[1], 'rb', buffering=0) as f:\n"
    "    for n in iter(lambda: f.readinto(block), 0):\n"
    "        digest.update(memoryview(block)[:n])\n"
)
"""One SHA-1 pass with the implementation kachery uses (hashlib; coreutils' sha1sum is
about twice as slow on the machines we measured, which would flatter kachery)."""


def _overlapped_baseline(uri: str, object_path: Path) -> List[str]:
    """The unverified read and one SHA-1 pass of the object, at the same time."""
    read = shlex.join([sys.executable, "-c", UNVERIFIED_READ, uri])
    sha1 = shlex.join([sys.executable, "-c", SHA1_PASS, str(object_path)])
    return ["sh", "-c", f"{read} > /dev/null & {sha1} > /dev/null; wait"]


def verified_rows(work: Path, data: Path, env: Dict[str, str], repeats: int) -> List[Row]:
    storage = work / "verified-node-storage"
    node_env = dict(env, KACHERY_DAEMON_PORT=str(free_port()), KACHERY_STORAGE_DIR=str(storage))
    node = Node(storage, node_env)
    try:
        uri = subprocess.run(
            [KACHERY, "store-file", str(data)],
            env=node_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        sha1 = uri[len("sha1://") :][:40]
        object_path = storage / "sha1" / sha1[0:2] / sha1[2:4] / sha1[4:6] / sha1
        baseline = _overlapped_baseline(uri, object_path)
        rows = [
            measure(
                "verified cat-file via node (http)",
                lambda i: [KACHERY, "cat-file", uri],
                "unverified read & SHA-1 pass",
                lambda i: baseline,
                1.2,
                repeats,
                node_env,
                to_devnull=True,
            )
        ]
        remote_env = dict(
            node_env,
            KACHERY_TRANSPORT="remote",
            KACHERY_STORAGE_DIR=str(work / "verified-remote-cache"),  # stays empty
            KACHERY_AUTH_TOKEN=_token(storage),
        )
        remote = measure(
            "verified cat-file via remote",
            lambda i: [KACHERY, "cat-file", uri],
            "unverified read & SHA-1 pass",
            lambda i: baseline,
            1.2,
            repeats,
            remote_env,
            to_devnull=True,
        )
        rows.append(dataclasses.replace(remote, rss_target_mib=100.0))  # imports requests
        return rows
    finally:
        node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kachery-bench-verified-"))
    try:
        data = work / "data.bin"
        _write_random(data, args.size_mib << 20)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            KACHERY_CONFIG=str(work / "config.toml"),
            KACHERY_SYSTEM_CONFIG=str(work / "system-config.toml"),
        )
        rows = verified_rows(work, data, env, args.repeats)
    finally:
        remove_tree(work)
    _print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
