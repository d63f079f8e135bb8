"""The example plugin `examples/kachery-mirror` with large files and when things go wrong:
a manifest and chunks, a corrupt or missing object, a server down or silent, writes
refused. The plugin runs as a user installs it (mirror_fixtures.py), traffic on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest
from conftest import free_port, sha1_file
from mirror_fixtures import (
    Run,
    Served,
    cached,
    one_line_error,
    staging_files,
    write_config,
)

from kachery_core.content.manifest import CHUNK_SIZE, chunk_bounds
from kachery_core.content.uri import parse_uri
from kachery_core.store.local import LocalStorage

# -- large files --------------------------------------------------------------------


@pytest.mark.slow
def test_large_file_with_manifest(mcli: Run, kenv, served: Served) -> None:
    uri = parse_uri(served.large)
    assert uri.manifest_sha1 is not None
    env = {"KACHERY_TRANSPORT": "mirror", "KACHERY_MIRROR_URL": served.url}
    loaded = mcli("load-file", served.large, **env)
    assert loaded.returncode == 0, loaded
    assert sha1_file(Path(loaded.stdout.strip())) == uri.sha1 == sha1_file(served.large_file)
    start, end = CHUNK_SIZE - 100, CHUNK_SIZE + 100  # across the chunk boundary
    part = mcli("cat-file", served.large, "--start", str(start), "--end", str(end), **env)
    with open(served.large_file, "rb") as f:
        f.seek(start)
        assert part.stdout_bytes == f.read(end - start)


@pytest.mark.slow
def test_large_file_assembled_from_chunks(mcli: Run, kenv, served: Served, tmp_path) -> None:
    """The server has the manifest and the chunks but not the whole file."""
    data = os.urandom(CHUNK_SIZE + 1_000_003)
    scratch = LocalStorage(tmp_path / "scratch")
    whole = scratch.store_bytes(data)
    assert whole.manifest_sha1 is not None
    publish = LocalStorage(served.root)
    publish.store_bytes(scratch.require(whole.manifest_sha1).read_bytes())
    chunks = [publish.store_bytes(data[s:e]).sha1 for s, e in chunk_bounds(len(data))]
    assert not publish.has(whole.sha1)

    uri = str(whole.uri("big.bin"))
    loaded = mcli("--transport", "mirror", "load-file", uri, KACHERY_MIRROR_URL=served.url)
    assert loaded.returncode == 0, loaded
    assert hashlib.sha1(Path(loaded.stdout.strip()).read_bytes()).hexdigest() == whole.sha1
    assert all(cached(kenv, c).is_file() for c in chunks)
    assert staging_files(kenv) == []


# -- failures -----------------------------------------------------------------------


def test_corrupt_object_is_refused_and_not_cached(mcli: Run, kenv, served: Served) -> None:
    data = os.urandom(10_000)
    uri = served.publish(data)
    path = LocalStorage(served.root).layout.object_path(uri.sha1)
    path.parent.chmod(0o755)
    path.chmod(0o644)
    path.write_bytes(bytes(b ^ 0xFF for b in data))  # same size, wrong bytes
    for args in (["load-file", str(uri)], ["cat-file", str(uri)]):
        failed = mcli("--transport", "mirror", *args, KACHERY_MIRROR_URL=served.url)
        line = one_line_error(failed)
        assert "corrupt" in line and served.object_url(uri.sha1) in line, line
        assert failed.stdout == ""
    assert not cached(kenv, uri.sha1).exists()
    assert staging_files(kenv) == []


def test_missing_object_is_not_found(mcli: Run, served: Served) -> None:
    sha1 = hashlib.sha1(os.urandom(16)).hexdigest()
    failed = mcli("--transport", "mirror", "load-file", f"sha1://{sha1}/x.bin")
    # no url yet: the error says both ways to set it
    line = one_line_error(failed)
    assert "[plugins.mirror]" in line and "KACHERY_MIRROR_URL" in line, line
    failed = mcli(
        "--transport", "mirror", "load-file", f"sha1://{sha1}/x.bin", KACHERY_MIRROR_URL=served.url
    )
    line = one_line_error(failed)
    assert f"sha1://{sha1}/x.bin" in line and served.object_url(sha1) in line and "404" in line


def test_server_down_or_silent_is_a_clean_error(mcli: Run, kenv, served: Served) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    failed = mcli("--transport", "mirror", "load-file", served.small, KACHERY_MIRROR_URL=dead)
    line = one_line_error(failed)
    assert f"cannot reach the mirror at {dead}: connection refused" in line, line
    assert "is the web server running?" in line

    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        write_config(kenv, f'[plugins.mirror]\nurl = "{url}"\ntimeout = 1\n')
        started = time.monotonic()
        failed = mcli("--transport", "mirror", "cat-file", served.small)
        assert time.monotonic() - started < 30
    assert "no answer within 1 s" in one_line_error(failed)
    assert staging_files(kenv) == []


def test_writes_are_refused_as_read_only(mcli: Run, kenv, served: Served, tmp_path) -> None:
    src = tmp_path / "new.txt"
    src.write_text("not for the mirror")
    for command_name in ("store-file", "link-file"):
        failed = mcli(
            "--transport", "mirror", command_name, str(src), KACHERY_MIRROR_URL=served.url
        )
        line = one_line_error(failed)
        assert "the 'mirror' backend does not support" in line and "read-only" in line, line
