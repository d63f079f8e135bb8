"""The channel tests' lab: one real S3 store (SeaweedFS) on loopback for the session and,
per test, a channel prefix of its own in its bucket, node config files and nodes.

Registered in conftest.py's `pytest_plugins`, so every module using `lab` shares the one
store (a fixture imported into each module would start one per module); the helpers are
imported by name (`from channel_fixtures import Lab, one_line_error`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from seaweed import SeaweedS3, running_s3

BUCKET = "kachery-channels"
BIG = 45_000_000  # over 20,000,000: a manifest, three chunks


@pytest.fixture(scope="session")
def lab_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS for every module that uses `lab`: each test has a prefix of its own."""
    # boto3 comes with the test extra, as weed does: a missing one fails here, not skips.
    import boto3  # noqa: F401

    with running_s3(tmp_path_factory.mktemp("seaweed"), BUCKET) as server:
        yield server


class Lab:
    """The test's view of one channel: its prefix, config files, nodes and the bucket."""

    def __init__(self, s3: SeaweedS3, kenv: Dict[str, str], make_node: Any, tmp: Path, prefix: str):
        self.s3 = s3
        self.kenv = kenv
        self.make_node = make_node
        self.tmp = tmp
        self.prefix = prefix
        self.client = s3.client()

    def config(self, name: str, endpoint_url: Optional[str] = None, **keys: Any) -> Path:
        lines = [
            "[channels.lab]",
            f'bucket = "{BUCKET}"',
            f'prefix = "{self.prefix}"',
            f'endpoint_url = "{endpoint_url or self.s3.endpoint_url}"',
            'region = "us-east-1"',
        ]
        for key, value in keys.items():
            lines.append(f"{key} = {json.dumps(value)}")
        path = self.tmp / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def node(self, name: str, **keys: Any) -> Any:
        return self.make_node("--config", str(self.config(name, **keys)))

    def env(self, node: Any, **extra: str) -> Dict[str, str]:
        """A client of `node` on its machine (the http backend, storage shared)."""
        return dict(
            self.kenv,
            KACHERY_DAEMON_PORT=str(node.port),
            KACHERY_STORAGE_DIR=str(node.storage_dir),
            **extra,
        )

    def object_key(self, sha1: str) -> str:
        return f"{self.prefix}sha1/{sha1[0:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"

    def request_key(self, sha1: str) -> str:
        return f"{self.prefix}requests/{sha1}"

    def listing(self) -> List[str]:
        found = self.client.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix).get("Contents", [])
        return sorted(item["Key"] for item in found)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)


@pytest.fixture
def lab(
    lab_s3: SeaweedS3, kenv: Dict[str, str], make_node: Any, tmp_path: Path, request: Any
) -> Lab:
    kenv.update(lab_s3.credentials)  # make_node and cli copy kenv when called
    # the test's name, readable in the bucket, and its node ID's hash: unique in the session
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50]
    tag = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    return Lab(lab_s3, kenv, make_node, tmp_path, f"{name}-{tag}/")


def channel_stats(node: Any) -> Dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    conn.request("GET", "/stats", headers=node.headers())
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return dict(doc["stats"])


def one_line_error(result: Any) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    # (Python 3.8 adds a CryptographyDeprecationWarning, two lines, before everything)
    if len(lines) == 3 and "Warning: " in lines[0]:
        lines = lines[2:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def random_sha1() -> str:
    return hashlib.sha1(str(time.time()).encode()).hexdigest()
