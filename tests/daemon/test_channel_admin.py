"""Channel administration and field failures: a missing bucket, a silent store, corrupt
copies in the bucket, stopping while a load waits, housekeeping, `channel check`.

Real nodes, real clients and a real S3 store (SeaweedFS), with the fixtures of
test_channels.py; a silent store is a loopback socket that accepts and never answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from conftest import command, sha1_file, write_random_file
from test_channels import BUCKET, Lab, _one_line_error, _random_sha1, lab, s3  # noqa: F401

from kachery_core.content.manifest import CHUNK_SIZE
from kachery_core.store.layout import StorageLayout
from kachery_daemon.channels.bucket import ChannelBucket
from kachery_daemon.channels.config import ChannelConfig
from kachery_daemon.channels.housekeeping import (
    REQUEST_MAX_AGE,
    UPLOAD_MAX_AGE,
    UploadJournal,
    abort_stale_uploads,
    expire_requests,
)
from kachery_daemon.channels.store_errors import (
    ATTEMPTS,
    EXPECT_WAIT,
    RETRY_PAUSE,
    ChannelUnreachable,
)

MISSPELT = "kachery-chanels"


def _config_with_bucket(lab: Lab, name: str, bucket: str) -> Path:  # noqa: F811
    path = lab.config(name)
    path.write_text(path.read_text().replace(f'bucket = "{BUCKET}"', f'bucket = "{bucket}"'))
    return path


def _buckets(lab: Lab) -> list:  # noqa: F811
    return [b["Name"] for b in lab.client.list_buckets().get("Buckets", [])]


def _log_lines(node: Any, words: str) -> list:
    return [line for line in node.log.read_text().splitlines() if words in line]


# -- 13: a missing bucket is never created --------------------------------------------


def test_missing_bucket_fails_at_once_and_is_not_created(lab: Lab, cli: Any) -> None:  # noqa: F811
    b = lab.make_node("--config", str(_config_with_bucket(lab, "b", MISSPELT)))
    started = time.monotonic()
    result = cli("load-file", f"sha1://{_random_sha1()}", "--channel", "lab", env=lab.env(b))
    error = _one_line_error(result)
    assert time.monotonic() - started < 10
    assert f"bucket {MISSPELT!r} of channel 'lab' does not exist" in error, error
    assert MISSPELT not in _buckets(lab)
    deadline = time.monotonic() + 10  # the check at start runs beside serving
    while not _log_lines(b, "warning") and time.monotonic() < deadline:
        time.sleep(0.1)
    (warning,) = _log_lines(b, "warning")
    assert "channel lab" in warning and MISSPELT in warning, warning


# -- 14: a store that accepts and never answers ---------------------------------------


class SilentStore:
    """Accepts every connection on loopback and never sends a byte; counts connections."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.connections: List[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)  # kept open, never answered

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(timeout=10)
        for conn in self.connections:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentStore]:
    store = SilentStore()
    yield store
    store.close()


def _bound(connect: float, read: float) -> float:
    """The worst case documented in docs-channels-node.md, for one request."""
    return ATTEMPTS * (connect + read + EXPECT_WAIT) + RETRY_PAUSE * (1 + 2)


def test_silent_store_gives_up_within_the_bound_with_the_real_count(
    silent: SilentStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("boto3")
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_CONFIG_FILE", str(tmp_path / "none")),
        ("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none")),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ):
        monkeypatch.setenv(name, value)
    channel = ChannelConfig(
        name="lab",
        bucket="kachery-test",
        endpoint_url=silent.url,
        region="us-east-1",
        connect_timeout=0.5,
        read_timeout=0.5,
        source="test.toml",
    )
    bucket = ChannelBucket(channel)
    for call in (lambda: bucket.head("k"), lambda: bucket.put_bytes("k", b"x")):
        before = len(silent.connections)
        started = time.monotonic()
        with pytest.raises(ChannelUnreachable) as caught:
            call()
        elapsed = time.monotonic() - started
        assert ATTEMPTS * 0.5 <= elapsed <= _bound(0.5, 0.5) + 1.0, elapsed
        assert len(silent.connections) - before == ATTEMPTS
        assert "no answer within 0.5 s (read_timeout)" in caught.value.message
        assert f"tried {ATTEMPTS} times" in (caught.value.hint or "")


def test_load_from_a_silent_store_ends_within_the_bound(
    lab: Lab,  # noqa: F811
    cli: Any,
    silent: SilentStore,
) -> None:
    config = lab.config("b", endpoint_url=silent.url, connect_timeout=0.5, read_timeout=0.5)
    b = lab.make_node("--config", str(config))
    started = time.monotonic()
    result = cli("load-file", f"sha1://{_random_sha1()}", "--channel", "lab", env=lab.env(b))
    error = _one_line_error(result)
    assert time.monotonic() - started <= _bound(0.5, 0.5) + 5.0  # + the client's start
    assert "no answer within 0.5 s" in error and f"tried {ATTEMPTS} times" in error, error


# -- 12: a corrupt manifest is named --------------------------------------------------

SIZE = 25_000_000  # over 20,000,000: a manifest, two chunks


def test_corrupt_manifest_is_named_in_the_error(lab: Lab, cli: Any, tmp_path: Path) -> None:  # noqa: F811
    a, b = lab.node("a"), lab.node("b")
    src = write_random_file(tmp_path / "m.bin", SIZE, seed=12)
    uri = cli("store-file", str(src), "--upload-to-channel", "lab", env=lab.env(a)).stdout.strip()
    manifest = uri.split("?manifest=")[1]
    data = bytearray(lab.get(lab.object_key(manifest)))
    data[10] ^= 0xFF
    lab.put(lab.object_key(manifest), bytes(data))

    error = _one_line_error(cli("load-file", uri, "--channel", "lab", env=lab.env(b)))
    assert f"s3://{BUCKET}/{lab.object_key(manifest)}" in error, error
    assert f"sha1 {manifest}" in error and "refused the manifest" in error, error
    assert not StorageLayout(b.storage_dir).object_path(sha1_file(src)).exists()


# -- 10: uploading again repairs a corrupt copy ----------------------------------------


def test_uploading_again_replaces_a_copy_with_other_bytes(
    lab: Lab,  # noqa: F811
    cli: Any,
    tmp_path: Path,
) -> None:
    a, b = lab.node("a"), lab.node("b")
    small = tmp_path / "small.txt"
    small.write_bytes(b"the right bytes " * 100)
    big = write_random_file(tmp_path / "big.bin", SIZE, seed=10)
    for path in (small, big):
        stored = cli("store-file", str(path), "--upload-to-channel", "lab", env=lab.env(a))
        assert stored.returncode == 0, stored
        key = lab.object_key(sha1_file(path))
        data = bytearray(lab.get(key))
        data[7] ^= 0xFF  # other bytes, the same size, no metadata: as another tool would put
        lab.put(key, bytes(data))
        assert len(lab.get(key)) == path.stat().st_size

        again = cli("store-file", str(path), "--upload-to-channel", "lab", env=lab.env(a))
        assert again.returncode == 0, again
        assert lab.get(key) == path.read_bytes()  # replaced
        loaded = cli("load-file", again.stdout.strip(), "--channel", "lab", env=lab.env(b))
        assert loaded.returncode == 0, loaded
        assert sha1_file(Path(loaded.stdout.strip())) == sha1_file(path)
        head = lab.client.head_object(Bucket=BUCKET, Key=key)
        assert head["Metadata"]["kachery-sha1"] == sha1_file(path)


# -- 11: a refused copy is not downloaded again ----------------------------------------


def _stats(node: Any) -> Dict[str, int]:
    from test_channels import _stats as stats

    return stats(node)


def test_a_refused_copy_is_not_downloaded_again(lab: Lab, cli: Any, tmp_path: Path) -> None:  # noqa: F811
    a, b, c = lab.node("a"), lab.node("b"), lab.node("c", request=False)
    small = tmp_path / "small.txt"
    small.write_bytes(b"the right bytes " * 100)
    uri = cli("store-file", str(small), "--upload-to-channel", "lab", env=lab.env(a)).stdout.strip()
    key = lab.object_key(sha1_file(small))
    data = bytearray(lab.get(key))
    data[7] ^= 0xFF
    lab.put(key, bytes(data))
    etag = lab.client.head_object(Bucket=BUCKET, Key=key)["ETag"]

    for node in (b, c):  # the first load downloads the copy and refuses it
        error = _one_line_error(cli("load-file", uri, "--channel", "lab", env=lab.env(node)))
        assert "refused" in error and "corrupt" in error, error
    fetched = {node: _stats(node)["channelBytesDownloaded"] for node in (b, c)}

    # a node that may request waits (here 2 s) for a new copy, then says why it failed
    started = time.monotonic()
    result = cli("load-file", uri, "--channel", "lab", env=lab.env(b, KACHERY_CHANNEL_TIMEOUT="2"))
    error = _one_line_error(result)
    assert 2 <= time.monotonic() - started < 15
    assert f"is corrupt (refused ETag {etag}); its provider must upload it again" in error, error
    # a node that may not request fails at once, with the same words
    error = _one_line_error(cli("load-file", uri, "--channel", "lab", env=lab.env(c)))
    assert f"is corrupt (refused ETag {etag}); its provider must upload it again" in error, error
    assert {node: _stats(node)["channelBytesDownloaded"] for node in (b, c)} == fetched

    # the provider uploads again (a new ETag): the waiting node takes the new copy
    load = subprocess.Popen(
        [command("kachery-client"), "load-file", uri, "--channel", "lab"],
        env=lab.env(b, KACHERY_CHANNEL_TIMEOUT="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)
        assert load.poll() is None  # still waiting
        again = cli("store-file", str(small), "--upload-to-channel", "lab", env=lab.env(a))
        assert again.returncode == 0, again
        out, err = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    assert load.returncode == 0, err
    assert Path(out.decode().strip()).read_bytes() == small.read_bytes()


# -- 9: stopping a node while a load waits for a provider ------------------------------


def test_stop_while_a_load_waits_is_prompt_and_clean(lab: Lab, cli: Any) -> None:  # noqa: F811
    grace = 4.0
    b = lab.make_node("--config", str(lab.config("b")), "--shutdown-grace-seconds", str(grace))
    load = subprocess.Popen(
        [command("kachery-client"), "load-file", f"sha1://{_random_sha1()}", "--channel", "lab"],
        env=lab.env(b, KACHERY_CHANNEL_TIMEOUT="120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while _stats(b).get("channelRequests", 0) < 1:  # the request is written: it waits
            assert time.monotonic() < deadline and load.poll() is None, "the load ended early"
            time.sleep(0.1)
        time.sleep(0.5)
        started = time.monotonic()
        assert b.stop() == 0
        assert time.monotonic() - started < grace + 2.0
        load.communicate(timeout=30)
        assert load.returncode == 1  # told the load was stopped, not left hanging
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    log = b.log.read_text()
    assert "Future exception was never retrieved" not in log, log
    assert "Traceback" not in log, log


# -- 16: housekeeping --------------------------------------------------------------------


def test_abandoned_download_files_are_removed_at_start(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    storage = tmp_path / "hk-storage"
    temp = StorageLayout(storage).default_temp_dir
    temp.mkdir(parents=True)
    old, fresh = temp / f"{'a' * 40}.download", temp / f"{'b' * 40}.download"
    for path in (old, fresh):
        path.write_bytes(b"partial")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old, (eight_days_ago, eight_days_ago))
    b = lab.make_node("--config", str(lab.config("b")), storage_dir=storage)
    deadline = time.monotonic() + 10
    while not _log_lines(b, "abandoned .download") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _log_lines(b, "removed 1 abandoned .download file(s)")
    assert not old.exists() and fresh.exists()


def _bucket_of(lab: Lab, journal: Any = None) -> ChannelBucket:  # noqa: F811
    channel = ChannelConfig(
        name="lab",
        bucket=BUCKET,
        prefix=lab.prefix,
        endpoint_url=lab.s3.endpoint_url,
        region="us-east-1",
        source="test.toml",
    )
    return ChannelBucket(channel, journal)


def test_old_requests_expire_and_stale_uploads_are_aborted(
    lab: Lab,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in lab.s3.credentials.items():
        monkeypatch.setenv(name, value)
    journal = UploadJournal(tmp_path / "channel-uploads.json")
    bucket = _bucket_of(lab, journal)
    sha1 = _random_sha1()
    lab.put(lab.request_key(sha1), b"{}")
    assert expire_requests(bucket, time.time()) == 0  # young: kept
    assert expire_requests(bucket, time.time() + REQUEST_MAX_AGE + 60) == 1
    assert lab.request_key(sha1) not in lab.listing()

    key = lab.object_key(sha1)
    started = bucket.upload_client.create_multipart_upload(Bucket=BUCKET, Key=key)
    (entry,) = journal.entries()  # recorded as boto3 started it
    assert entry["uploadId"] == started["UploadId"] and entry["key"] == key
    assert abort_stale_uploads(bucket, journal, time.time()) == 0
    assert abort_stale_uploads(bucket, journal, time.time() + UPLOAD_MAX_AGE + 60) == 1
    assert journal.entries() == []
    listed = lab.client.list_multipart_uploads(Bucket=BUCKET, Prefix=lab.prefix)
    assert [u["UploadId"] for u in listed.get("Uploads", [])] == []


# -- 17a: kachery-daemon channel check -------------------------------------------------


def _check(cli: Any, config: Path, **env: str) -> Any:
    return cli(
        "channel",
        "check",
        "lab",
        "--config",
        str(config),
        program="kachery-daemon",
        env=env or None,
    )


def test_channel_check_reports_one_line_per_problem(
    lab: Lab,  # noqa: F811
    cli: Any,
    silent: SilentStore,
) -> None:
    good = _check(cli, lab.config("good"))
    assert good.returncode == 0, good
    assert "channel lab:" in good.stdout and good.stdout.strip().endswith(": ok")
    assert lab.listing() == []  # the write check left nothing behind

    missing = _check(cli, _config_with_bucket(lab, "missing", MISSPELT))
    assert f"bucket {MISSPELT!r} of channel 'lab' does not exist" in _one_line_error(missing)
    assert MISSPELT not in _buckets(lab)

    refused = _check(cli, lab.config("refused"), **dict(lab.kenv, AWS_SECRET_ACCESS_KEY="wrong"))
    assert "refused" in _one_line_error(refused)

    config = lab.config("silent", endpoint_url=silent.url, connect_timeout=0.5, read_timeout=0.5)
    silent_result = _check(cli, config)
    assert "no answer within 0.5 s" in _one_line_error(silent_result)

    unknown = cli("channel", "check", "nope", "--config", str(config), program="kachery-daemon")
    assert "no channel 'nope'" in _one_line_error(unknown)


# -- 4: chunks of a file only another node holds ---------------------------------------


def _chunk_uri(path: Path, start: int, end: int) -> str:
    with open(path, "rb") as f:
        f.seek(start)
        chunk = hashlib.sha1(f.read(end - start)).hexdigest()
    return f"sha1://{chunk}?chunkOf={sha1_file(path)}~{start}~{end}"


def test_chunks_are_served_from_whole_files(lab: Lab, cli: Any, tmp_path: Path) -> None:  # noqa: F811
    a = lab.node("a", provide=True, poll_seconds=0.3)
    b, c = lab.node("b"), lab.node("c", request=False)
    src = write_random_file(tmp_path / "whole.bin", SIZE, seed=4)
    assert cli("store-file", str(src), env=lab.env(a)).returncode == 0  # on A only

    # B asks for the first chunk: A holds only the whole file, cuts the chunk and uploads it
    first = _chunk_uri(src, 0, CHUNK_SIZE)
    loaded = cli(
        "load-file", first, "--channel", "lab", env=lab.env(b, KACHERY_CHANNEL_TIMEOUT="60")
    )
    assert loaded.returncode == 0, loaded
    assert Path(loaded.stdout.strip()).read_bytes() == src.read_bytes()[:CHUNK_SIZE]

    # the whole file in the bucket: C (which never requests) cuts the last chunk from it
    assert cli("store-file", str(src), "--upload-to-channel", "lab", env=lab.env(a)).returncode == 0
    last = _chunk_uri(src, CHUNK_SIZE, SIZE)
    loaded = cli("load-file", last, "--channel", "lab", env=lab.env(c))
    assert loaded.returncode == 0, loaded
    assert Path(loaded.stdout.strip()).read_bytes() == src.read_bytes()[CHUNK_SIZE:]


def test_python_load_bytes_of_a_file_only_another_node_holds(
    lab: Lab,  # noqa: F811
    cli: Any,
    tmp_path: Path,
) -> None:
    import kachery_client as kc

    a = lab.node("a", provide=True, poll_seconds=0.3)
    b = lab.node("b")
    src = write_random_file(tmp_path / "w.bin", SIZE, seed=40)
    uri = cli("store-file", str(src), env=lab.env(a)).stdout.strip()
    client = kc.Client(daemon_port=b.port, storage_dir=str(b.storage_dir), channel="lab")
    try:
        data = client.load_bytes(uri, CHUNK_SIZE + 1000, CHUNK_SIZE + 1100)  # in the last chunk
    finally:
        client.close()
    assert data == src.read_bytes()[CHUNK_SIZE + 1000 : CHUNK_SIZE + 1100]
