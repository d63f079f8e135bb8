"""Channel administration and a store that fails: a missing bucket, a silent store,
stopping while a load waits, housekeeping, `kachery-daemon channel check`.

Real nodes, real clients and a real S3 store (SeaweedFS, the `lab` of channel_fixtures.py);
a silent store is a loopback socket that accepts and never answers. Corrupt copies in the
bucket and chunks cut from whole files are in test_channel_copies.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from channel_fixtures import BUCKET, Lab, channel_stats, one_line_error, random_sha1
from conftest import command

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


def _config_with_bucket(lab: Lab, name: str, bucket: str) -> Path:
    path = lab.config(name)
    path.write_text(path.read_text().replace(f'bucket = "{BUCKET}"', f'bucket = "{bucket}"'))
    return path


def _buckets(lab: Lab) -> list:
    return [b["Name"] for b in lab.client.list_buckets().get("Buckets", [])]


def _log_lines(node: Any, words: str) -> list:
    return [line for line in node.log.read_text().splitlines() if words in line]


# -- 13: a missing bucket is never created --------------------------------------------


def test_missing_bucket_fails_at_once_and_is_not_created(lab: Lab, cli: Any) -> None:
    b = lab.make_node("--config", str(_config_with_bucket(lab, "b", MISSPELT)))
    started = time.monotonic()
    result = cli("load-file", f"sha1://{random_sha1()}", "--channel", "lab", env=lab.env(b))
    error = one_line_error(result)
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
    lab: Lab,
    cli: Any,
    silent: SilentStore,
) -> None:
    config = lab.config("b", endpoint_url=silent.url, connect_timeout=0.5, read_timeout=0.5)
    b = lab.make_node("--config", str(config))
    started = time.monotonic()
    result = cli("load-file", f"sha1://{random_sha1()}", "--channel", "lab", env=lab.env(b))
    error = one_line_error(result)
    assert time.monotonic() - started <= _bound(0.5, 0.5) + 5.0  # + the client's start
    assert "no answer within 0.5 s" in error and f"tried {ATTEMPTS} times" in error, error


# -- 9: stopping a node while a load waits for a provider ------------------------------


def test_stop_while_a_load_waits_is_prompt_and_clean(lab: Lab, cli: Any) -> None:
    grace = 4.0
    b = lab.make_node("--config", str(lab.config("b")), "--shutdown-grace-seconds", str(grace))
    load = subprocess.Popen(
        [command("kachery-client"), "load-file", f"sha1://{random_sha1()}", "--channel", "lab"],
        env=lab.env(b, KACHERY_CHANNEL_TIMEOUT="120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while channel_stats(b).get("channelRequests", 0) < 1:  # the request is written: it waits
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


def test_abandoned_download_files_are_removed_at_start(lab: Lab, tmp_path: Path) -> None:
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


def _bucket_of(lab: Lab, journal: Any = None) -> ChannelBucket:
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
    lab: Lab,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in lab.s3.credentials.items():
        monkeypatch.setenv(name, value)
    journal = UploadJournal(tmp_path / "channel-uploads.json")
    bucket = _bucket_of(lab, journal)
    sha1 = random_sha1()
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
    lab: Lab,
    cli: Any,
    silent: SilentStore,
) -> None:
    good = _check(cli, lab.config("good"))
    assert good.returncode == 0, good
    assert "channel lab:" in good.stdout and good.stdout.strip().endswith(": ok")
    assert lab.listing() == []  # the write check left nothing behind

    missing = _check(cli, _config_with_bucket(lab, "missing", MISSPELT))
    assert f"bucket {MISSPELT!r} of channel 'lab' does not exist" in one_line_error(missing)
    assert MISSPELT not in _buckets(lab)

    refused = _check(cli, lab.config("refused"), **dict(lab.kenv, AWS_SECRET_ACCESS_KEY="wrong"))
    assert "refused" in one_line_error(refused)

    config = lab.config("silent", endpoint_url=silent.url, connect_timeout=0.5, read_timeout=0.5)
    silent_result = _check(cli, config)
    assert "no answer within 0.5 s" in one_line_error(silent_result)

    unknown = cli("channel", "check", "nope", "--config", str(config), program="kachery-daemon")
    assert "no channel 'nope'" in one_line_error(unknown)
