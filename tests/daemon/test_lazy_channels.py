"""Lazy reads of a file that the client's node lacks but its channel holds: the node fetches
it through the channel, and only the chunks read cross to a `remote` client."""

from __future__ import annotations

import hashlib
from pathlib import Path

from channel_fixtures import BIG, Lab
from conftest import write_random_file

import kachery_client as kc
from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.content.uri import parse_uri
from kachery_core.store.layout import StorageLayout


def test_a_lazy_read_through_a_channel_moves_only_the_chunk_read(
    lab: Lab, cli, tmp_path: Path
) -> None:
    a, b = lab.node("a"), lab.node("b")
    big = write_random_file(tmp_path / "big.bin", BIG, seed=21)
    data = big.read_bytes()
    stored = cli("store-file", str(big), "--upload-to-channel", "lab", env=lab.env(a))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    token = cli(
        "token", "create", "--label", "lazy", "--storage-dir", str(b.storage_dir),
        program="kachery-daemon",
    ).stdout.strip()  # fmt: skip
    cache = tmp_path / "laptop-cache"
    with kc.Client(
        backend="remote",
        daemon_port=b.port,
        storage_dir=str(cache),
        auth_token=token,
        channel="lab",
    ) as c, c.open(uri) as f:
        f.seek(CHUNK_SIZE + 123)
        assert f.read(1000) == data[CHUNK_SIZE + 123 : CHUNK_SIZE + 1123]
    whole = parse_uri(uri).sha1
    assert StorageLayout(b.storage_dir).object_path(whole).exists()  # b fetched it
    assert not StorageLayout(cache).object_path(whole).exists()  # the laptop did not
    chunk = hashlib.sha1(data[CHUNK_SIZE : 2 * CHUNK_SIZE]).hexdigest()
    assert StorageLayout(cache).object_path(chunk).exists()

    http = kc.Client(daemon_port=b.port, storage_dir=str(b.storage_dir), channel="lab")
    with http, http.open(uri) as f:  # http: the node's storage, read in place
        f.seek(BIG - 10)
        assert f.read() == data[-10:]
