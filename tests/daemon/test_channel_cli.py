"""Channels from the client's side: names checked before any work, the URI of a stored file
printed even when its upload fails, a lost node named as such, and `kachery-client upload`.

Real `kachery-client` subprocesses against real nodes; the channel itself is a real
SeaweedFS S3 store on loopback (tests/seaweed.py), one for the module.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from conftest import command, free_port, sha1_file, write_random_file
from seaweed import SeaweedS3, running_s3

import kachery_client as kc
from kachery_core.store.layout import StorageLayout

BAD = "Bad Name!"
BUCKET = "kachery-channel-cli"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with running_s3(tmp_path_factory.mktemp("seaweed"), BUCKET) as server:
        yield server


@pytest.fixture
def channel_node(
    s3: SeaweedS3, kenv: Dict[str, str], make_node: Any, tmp_path: Path, request: Any
) -> Any:
    """`channel_node(name, **keys)`: a node of channel `lab` (its own prefix per test)."""
    kenv.update(s3.credentials)  # make_node and cli copy kenv when called
    prefix = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50] + "/"

    def make(name: str, **keys: Any) -> Any:
        lines = [
            "[channels.lab]",
            f'bucket = "{BUCKET}"',
            f'prefix = "{prefix}"',
            f'endpoint_url = "{s3.endpoint_url}"',
            'region = "us-east-1"',
            *(f"{key} = {json.dumps(value)}" for key, value in keys.items()),
        ]
        config = tmp_path / f"{name}.toml"
        config.write_text("\n".join(lines) + "\n")
        return make_node("--config", str(config))

    make.prefix = prefix  # type: ignore[attr-defined]
    return make


def _env(kenv: Dict[str, str], node: Any, **extra: str) -> Dict[str, str]:
    """A client of `node` on its machine (the http backend, storage shared)."""
    return dict(
        kenv, KACHERY_DAEMON_PORT=str(node.port), KACHERY_STORAGE_DIR=str(node.storage_dir), **extra
    )


def _error_lines(stderr: str) -> List[str]:
    lines = stderr.strip().splitlines()
    # (Python 3.8 adds a CryptographyDeprecationWarning, two lines, before everything)
    if len(lines) == 3 and "Warning: " in lines[0]:
        lines = lines[2:]
    return lines


def _one_error(result: Any, code: int = 1) -> str:
    assert result.returncode == code, result
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _nothing_stored(storage_dir: Path) -> bool:
    return not (storage_dir / "sha1").exists() or not any((storage_dir / "sha1").rglob("*"))


# -- channel names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["load-file", "sha1://" + "0" * 40, "--channel", BAD],
        ["cat-file", "sha1://" + "0" * 40, "--channel", BAD],
        ["store-file", "FILE", "--upload-to-channel", BAD],
        ["store-file", "-", "--upload-to-channel", BAD],
        ["upload", "sha1://" + "0" * 40, "--channel", BAD],
    ],
)
def test_a_bad_channel_name_is_a_usage_error(
    cli: Any, kenv: Dict[str, str], tmp_path: Path, args: List[str]
) -> None:
    src = tmp_path / "x.txt"
    src.write_text("never stored")
    args = [str(src) if a == "FILE" else a for a in args]
    result = cli(*args, input=b"never stored either")
    error = _one_error(result, 2)
    assert repr(BAD) in error and "channel name" in error, error
    assert result.stdout == ""
    assert _nothing_stored(Path(kenv["KACHERY_STORAGE_DIR"]))


def test_a_bad_channel_name_in_the_python_api(kenv: Dict[str, str], tmp_path: Path) -> None:
    for make in (
        lambda: kc.Client(channel=BAD),
        lambda: kc.Client().store_file(tmp_path / "y.txt", upload_to_channel=BAD),
        lambda: kc.Client().store_stream(io.BytesIO(b"never stored"), upload_to_channel=BAD),
        lambda: kc.Client().upload_to_channel("sha1://" + "0" * 40, BAD),
    ):
        (tmp_path / "y.txt").write_text("never stored")
        with pytest.raises(kc.InvalidInputError) as caught:
            make()
        assert isinstance(caught.value, ValueError)
        assert repr(BAD) in str(caught.value)
    assert _nothing_stored(Path(kenv["KACHERY_STORAGE_DIR"]))
    assert kc.Client(channel=" lab ").config.channel == "lab"


def test_failed_upload_still_prints_the_uri(cli: Any, node: Any, tmp_path: Path) -> None:
    src = tmp_path / "kept.txt"
    src.write_text("stored, though the upload fails")
    for args in ([str(src)], ["-"]):
        result = cli("store-file", *args, "--upload-to-channel", "lab", input=src.read_bytes())
        error = _one_error(result)
        assert "belongs to no channel" in error, error
        uri = result.stdout.strip()
        assert re.fullmatch(r"sha1://[0-9a-f]{40}(/kept\.txt)?", uri), result.stdout
        assert uri.split("/")[2] == sha1_file(src)
        assert StorageLayout(node.storage_dir).object_path(sha1_file(src)).exists()


# -- a node lost mid-stream --------------------------------------------------------------


@pytest.mark.parametrize("backend", ["remote", "grpc"])
def test_node_killed_during_a_download_is_a_lost_node(
    cli: Any, make_node: Any, kenv: Dict[str, str], tmp_path: Path, backend: str
) -> None:
    grpc_port = free_port()
    node = make_node("--grpc-port", str(grpc_port), "--auth-rotate-seconds", "300")
    big = write_random_file(tmp_path / "big.bin", 64_000_000, seed=8)
    uri = cli("store-file", str(big), env=_env(kenv, node)).stdout.strip()
    env = dict(
        kenv,
        KACHERY_TRANSPORT=backend,
        KACHERY_DAEMON_PORT=str(node.port),
        KACHERY_GRPC_PORT=str(grpc_port),
        KACHERY_STORAGE_DIR=str(tmp_path / "laptop-cache"),
        KACHERY_AUTH_CODE_FILE=str(node.storage_dir / "client-auth"),
    )
    # stdout is not read until the node is dead: the client stalls on it mid-download
    proc = subprocess.Popen(
        [command("kachery-client"), "cat-file", uri],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.read(1)  # the bytes are flowing
        time.sleep(0.5)
        node.kill()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert 1 + len(out) < big.stat().st_size
    lines = _error_lines(err.decode())
    assert len(lines) == 1 and lines[0].startswith("Error: lost the node"), err
    port = grpc_port if backend == "grpc" else node.port
    assert f":{port} during the read of {uri}" in lines[0], err
    assert not list((tmp_path / "laptop-cache").rglob("*.part"))


def test_node_killed_while_waiting_for_a_provider_is_a_lost_node(
    channel_node: Any, s3: SeaweedS3, kenv: Dict[str, str]
) -> None:
    b = channel_node("b")
    sha1 = hashlib.sha1(str(time.time()).encode()).hexdigest()
    request_key = f"{channel_node.prefix}requests/{sha1}"
    env = _env(kenv, b, KACHERY_CHANNEL_TIMEOUT="120")  # no provider ever comes
    proc = subprocess.Popen(
        [command("kachery-client"), "load-file", f"sha1://{sha1}", "--channel", "lab"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        client = s3.client()
        deadline = time.monotonic() + 30
        while not client.list_objects_v2(Bucket=BUCKET, Prefix=request_key).get("Contents"):
            assert time.monotonic() < deadline and proc.poll() is None, "no request was made"
            time.sleep(0.1)
        b.kill()  # the node is streaming its answer, waiting for a provider
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert out == b""
    lines = _error_lines(err.decode())
    assert len(lines) == 1 and lines[0].startswith("Error: lost the node"), err
    assert f":{b.port} during the load of sha1://{sha1}" in lines[0], err


# -- kachery-client upload ---------------------------------------------------------------


def test_upload_a_stored_and_a_linked_file(
    channel_node: Any, cli: Any, kenv: Dict[str, str], tmp_path: Path
) -> None:
    a, b = channel_node("a"), channel_node("b")
    big = write_random_file(tmp_path / "big.bin", 25_000_000, seed=9)  # with a manifest
    linked = tmp_path / "linked.txt"
    linked.write_text("linked on A, uploaded later\n")
    stored = cli("store-file", str(big), env=_env(kenv, a))
    link = cli("link-file", str(linked), env=_env(kenv, a))
    assert stored.returncode == 0 and link.returncode == 0, (stored, link)
    uris = {big: stored.stdout.strip(), linked: link.stdout.strip()}
    assert "?manifest=" in uris[big]

    for path, uri in uris.items():
        missing = cli(
            "load-file", uri, "--channel", "lab", env=_env(kenv, b, KACHERY_CHANNEL_TIMEOUT="1")
        )
        assert missing.returncode == 1, missing  # not in the channel yet, no provider

        uploaded = cli("upload", uri, "--channel", "lab", env=_env(kenv, a))
        assert uploaded.returncode == 0, uploaded
        assert uploaded.stdout == "" and "uploaded to channel lab" in uploaded.stderr

        loaded = cli("load-file", uri, "--channel", "lab", env=_env(kenv, b))
        assert loaded.returncode == 0, loaded
        assert sha1_file(Path(loaded.stdout.strip())) == sha1_file(path)

    again = cli("upload", uris[big], env=_env(kenv, a, KACHERY_CHANNEL="lab"))  # the default
    assert again.returncode == 0, again


def test_upload_errors(channel_node: Any, cli: Any, kenv: Dict[str, str], make_node: Any) -> None:
    a = channel_node("a")
    absent = "sha1://" + hashlib.sha1(b"never stored").hexdigest()
    error = _one_error(cli("upload", absent, "--channel", "lab", env=_env(kenv, a)))
    assert f"{absent} is not stored on this node" in error, error
    error = _one_error(cli("upload", absent, env=_env(kenv, a)), 2)
    assert "no channel to upload to" in error and "--channel" in error
    error = _one_error(cli("upload", "sha1://nothex", "--channel", "lab", env=_env(kenv, a)))
    assert "nothex" in error
    plain = make_node()
    error = _one_error(cli("upload", absent, "--channel", "lab", env=_env(kenv, plain)))
    assert "belongs to no channel" in error
    error = _one_error(cli("upload", absent, "--channel", "lab"))  # no node: embedded backend
    assert "channels need a node" in error
