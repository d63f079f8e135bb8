"""Channels end to end: real nodes exchanging files through a real S3 store (SeaweedFS).

One SeaweedFS server on loopback serves the session (`lab` in channel_fixtures.py); each
test uses its own key prefix in the shared bucket. Nodes are real `kachery-daemon` processes
started with `--config`, clients are real `kachery-client` processes. A node's channel
configuration, checked without a store, is in test_channel_config.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, List

from channel_fixtures import BIG, Lab, channel_stats, one_line_error, random_sha1
from conftest import command, free_port, sha1_file, write_random_file

from kachery_core.store.layout import StorageLayout

# -- upload and load -------------------------------------------------------------------


def test_a_uploads_b_loads_the_same_bytes(lab: Lab, cli: Any, tmp_path: Path) -> None:
    a, b = lab.node("a"), lab.node("b")
    big = write_random_file(tmp_path / "big.bin", BIG, seed=1)
    small = tmp_path / "notes.txt"
    small.write_text("shared through the channel\n")

    stored = cli("store-file", str(big), "--upload-to-channel", "lab", env=lab.env(a))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    assert "?manifest=" in uri and "uploaded to channel lab" in stored.stderr
    sha1, manifest = sha1_file(big), uri.split("?manifest=")[1]
    # the bucket layout: the object and its manifest, like a storage directory
    assert lab.listing() == sorted([lab.object_key(sha1), lab.object_key(manifest)])

    loaded = cli("load-file", uri, "--channel", "lab", env=lab.env(b))
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    assert path == StorageLayout(b.storage_dir).object_path(sha1)
    assert sha1_file(path) == sha1
    assert channel_stats(b)["channelBytesDownloaded"] >= BIG
    assert list((b.storage_dir / "tmp").glob("*.download")) == []  # nothing left behind

    small_uri = cli("store-file", str(small), "--upload-to-channel", "lab", env=lab.env(a))
    catted = cli("cat-file", small_uri.stdout.strip(), "--channel", "lab", env=lab.env(b))
    assert catted.returncode == 0, catted
    assert catted.stdout_bytes == small.read_bytes()

    again = cli("store-file", str(big), "--upload-to-channel", "lab", env=lab.env(a))
    assert again.returncode == 0 and again.stdout.strip() == uri  # already there: no-op


def test_python_client_names_the_channel(lab: Lab, cli: Any, tmp_path: Path) -> None:
    import kachery_client as kc

    a, b = lab.node("a"), lab.node("b")
    client_a = kc.Client(daemon_port=a.port, storage_dir=str(a.storage_dir))
    uri = client_a.store_text("from the Python API")
    client_a.upload_to_channel(uri, "lab")
    client_b = kc.Client(daemon_port=b.port, storage_dir=str(b.storage_dir), channel="lab")
    assert client_b.load_text(uri) == "from the Python API"
    client_a.close()
    client_b.close()


# -- request and provide ---------------------------------------------------------------


def test_b_requests_and_a_provides(lab: Lab, cli: Any, tmp_path: Path) -> None:
    a = lab.node("a", provide=True, poll_seconds=0.3)
    b = lab.node("b")
    src = write_random_file(tmp_path / "only-on-a.bin", BIG, seed=2)
    stored = cli("store-file", str(src), env=lab.env(a))  # stored on A, not uploaded
    uri, sha1 = stored.stdout.strip(), sha1_file(src)
    assert lab.listing() == []

    started = time.monotonic()
    loaded = cli("load-file", uri, env=lab.env(b, KACHERY_CHANNEL="lab"))  # the default channel
    assert loaded.returncode == 0, loaded
    assert time.monotonic() - started < 30
    assert sha1_file(Path(loaded.stdout.strip())) == sha1
    assert lab.request_key(sha1) not in lab.listing()  # the requester deleted its request
    assert lab.object_key(sha1) in lab.listing()
    assert channel_stats(a)["channelRequestsProvided"] == 1
    assert channel_stats(b)["channelRequests"] == 1

    # a URI without ?manifest=: A makes the manifest, B finds it in the object's metadata
    other = write_random_file(tmp_path / "other.bin", 25_000_000, seed=5)
    bare = cli("store-file", str(other), env=lab.env(a)).stdout.strip().split("?")[0]
    loaded = cli("load-file", bare, "--channel", "lab", env=lab.env(b))
    assert loaded.returncode == 0, loaded
    assert sha1_file(Path(loaded.stdout.strip())) == sha1_file(other)
    manifests = [
        k
        for k in lab.listing()
        if k not in (lab.object_key(sha1), lab.object_key(sha1_file(other)))
    ]
    assert len(manifests) == 2  # one per big file, as ordinary objects


def test_request_times_out_with_a_clear_error(lab: Lab, cli: Any) -> None:
    b = lab.node("b")
    sha1 = random_sha1()
    result = cli(
        "load-file",
        f"sha1://{sha1}",
        "--channel",
        "lab",
        env=lab.env(b, KACHERY_CHANNEL_TIMEOUT="1"),
    )
    error = one_line_error(result)
    assert "no node of channel 'lab' provided" in error and "within 1 s" in error
    assert "KACHERY_CHANNEL_TIMEOUT" in error
    assert lab.request_key(sha1) in lab.listing()  # left for providers that come later
    doc = json.loads(lab.get(lab.request_key(sha1)))
    assert doc["sha1"] == sha1 and len(doc["nodeId"]) == 64 and doc["time"] > 0


def test_node_that_may_not_request_says_so(lab: Lab, cli: Any) -> None:
    b = lab.node("b", request=False)
    result = cli("load-file", f"sha1://{random_sha1()}", "--channel", "lab", env=lab.env(b))
    assert "request = false" in one_line_error(result)
    assert lab.listing() == []


# -- errors ----------------------------------------------------------------------------


def test_corrupted_object_is_refused_then_provided_again(
    lab: Lab, cli: Any, tmp_path: Path
) -> None:
    a = lab.node("a", provide=True, poll_seconds=0.3)
    b = lab.node("b")
    small = tmp_path / "small.txt"
    small.write_bytes(b"the right bytes " * 100)
    big = write_random_file(tmp_path / "big.bin", BIG, seed=3)
    uris = {}
    for path in (small, big):
        stored = cli("store-file", str(path), "--upload-to-channel", "lab", env=lab.env(a))
        assert stored.returncode == 0, stored
        uris[path] = stored.stdout.strip()

    # one flipped byte: in the small object, and in the middle chunk of the big one
    data = bytearray(lab.get(lab.object_key(sha1_file(small))))
    data[7] ^= 0xFF
    lab.put(lab.object_key(sha1_file(small)), bytes(data))
    data = bytearray(lab.get(lab.object_key(sha1_file(big))))
    data[30_000_000] ^= 0xFF
    lab.put(lab.object_key(sha1_file(big)), bytes(data))
    del data

    for path in (small, big):
        sha1 = sha1_file(path)
        result = cli("load-file", uris[path], "--channel", "lab", env=lab.env(b))
        error = one_line_error(result)
        assert "refused" in error and "corrupt" in error and "hash" in error, error
        assert not StorageLayout(b.storage_dir).object_path(sha1).exists()  # nothing stored
        assert lab.request_key(sha1) in lab.listing()  # left for another provider
        assert json.loads(lab.get(lab.request_key(sha1)))["refusedEtag"]
    assert channel_stats(b)["channelObjectsRefused"] == 2

    # A sees the requests naming the refused copies and uploads good ones over them
    deadline = time.monotonic() + 30
    while channel_stats(a).get("channelRequestsProvided", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    for path in (small, big):
        loaded = cli("load-file", uris[path], "--channel", "lab", env=lab.env(b))
        assert loaded.returncode == 0, loaded
        assert sha1_file(Path(loaded.stdout.strip())) == sha1_file(path)


def test_unreachable_store_is_a_clear_error(lab: Lab, cli: Any, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    c = lab.make_node("--config", str(lab.config("c", endpoint_url=f"http://127.0.0.1:{closed}")))
    src = tmp_path / "x.txt"
    src.write_text("going nowhere")
    for args in (
        ["load-file", f"sha1://{random_sha1()}", "--channel", "lab"],
        ["store-file", str(src), "--upload-to-channel", "lab"],
    ):
        started = time.monotonic()
        error = one_line_error(cli(*args, env=lab.env(c)))
        assert time.monotonic() - started < 30
        assert "cannot reach the store of channel 'lab'" in error
        assert f"http://127.0.0.1:{closed}" in error


def test_unknown_channel_lists_the_nodes_channels(lab: Lab, cli: Any, tmp_path: Path) -> None:
    b = lab.node("b")
    result = cli("load-file", f"sha1://{random_sha1()}", "--channel", "nope", env=lab.env(b))
    error = one_line_error(result)
    assert "not in channel 'nope'" in error and "its channels: lab" in error
    src = tmp_path / "y.txt"
    src.write_text("y")
    error = one_line_error(
        cli("store-file", str(src), "--upload-to-channel", "nope", env=lab.env(b))
    )
    assert "not in channel 'nope'" in error and "its channels: lab" in error

    plain = lab.make_node()  # a node with no config file: no channels at all
    result = cli("load-file", f"sha1://{random_sha1()}", "--channel", "lab", env=lab.env(plain))
    assert "belongs to no channel" in one_line_error(result)


# -- resuming --------------------------------------------------------------------------


class SlowProxy:
    """A TCP relay on loopback that sends the store's answers at `rate` bytes/s per connection."""

    def __init__(self, target_port: int, rate: float) -> None:
        self.target_port = target_port
        self.rate = rate
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.closed = threading.Event()
        self.sockets: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.rate), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, rate: float) -> None:
        try:
            while not self.closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for s in self.sockets:
            s.close()


def test_interrupted_download_resumes(lab: Lab, cli: Any, tmp_path: Path) -> None:
    size = 100_000_000  # five chunks
    a = lab.node("a")
    src = write_random_file(tmp_path / "resume.bin", size, seed=4)
    stored = cli("store-file", str(src), "--upload-to-channel", "lab", env=lab.env(a))
    assert stored.returncode == 0, stored
    uri, sha1 = stored.stdout.strip(), sha1_file(src)

    proxy = SlowProxy(lab.s3.ports["s3"], rate=12e6)  # 2 chunks at a time: ~24 MB/s for B
    try:
        config = lab.config("b", endpoint_url=f"http://127.0.0.1:{proxy.port}", max_parallel=2)
        b = lab.make_node("--config", str(config))
        load = subprocess.Popen(
            [command("kachery-client"), "load-file", uri, "--channel", "lab"],
            env=lab.env(b),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while channel_stats(b).get("channelBytesDownloaded", 0) < 50_000_000:
            assert time.monotonic() < deadline and load.poll() is None, "the download ended early"
            time.sleep(0.05)
        b.kill()  # halfway: two chunks done, others partly written
        load.communicate(timeout=30)
        assert load.returncode == 1
    finally:
        proxy.close()
    partial = b.storage_dir / "tmp" / f"{sha1}.download"
    assert partial.exists()
    assert not StorageLayout(b.storage_dir).object_path(sha1).exists()

    lab.config("b", max_parallel=2)  # the same node, now straight to the store
    b.start()
    loaded = cli("load-file", uri, "--channel", "lab", env=lab.env(b))
    assert loaded.returncode == 0, loaded
    assert sha1_file(Path(loaded.stdout.strip())) == sha1
    fetched = channel_stats(b)["channelBytesDownloaded"]
    assert 0 < fetched <= size - 40_000_000  # the verified chunks were kept
    assert not partial.exists()


# -- the remote backend: the bytes end in the client's cache ---------------------------


def test_remote_client_in_cache_mode(lab: Lab, cli: Any, tmp_path: Path) -> None:
    a, b = lab.node("a"), lab.node("b")
    src = tmp_path / "far.txt"
    src.write_text("to a laptop, through the channel and node B")
    uri = cli("store-file", str(src), "--upload-to-channel", "lab", env=lab.env(a)).stdout.strip()
    token = cli(
        "token",
        "create",
        "--label",
        "laptop",
        "--storage-dir",
        str(b.storage_dir),
        program="kachery-daemon",
    ).stdout.strip()
    cache = tmp_path / "laptop-cache"
    env = dict(
        lab.kenv,
        KACHERY_TRANSPORT="remote",
        KACHERY_DAEMON_PORT=str(b.port),
        KACHERY_STORAGE_DIR=str(cache),
        KACHERY_AUTH_TOKEN=token,
        KACHERY_CHANNEL="lab",
    )
    loaded = cli("load-file", uri, env=env)
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    assert path == StorageLayout(cache).object_path(sha1_file(src))
    assert path.read_bytes() == src.read_bytes()
    assert StorageLayout(b.storage_dir).object_path(sha1_file(src)).exists()
