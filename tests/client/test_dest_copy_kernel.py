"""`load-file --dest` of a large object: the kernel copies it (`copy_file_range`) while one
thread hashes the copy through a mapping of its private staging file. The copy appears only
when its hash is the object's; without the kernel copy the read/write loop does the same."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_random_file

from kachery_client.dest_copy import copy_verified
from kachery_core.content.hashing import COPY_STEP
from kachery_core.content.uri import parse_uri
from kachery_core.errors import IntegrityError
from kachery_core.store.local import LocalStorage

SIZE = 3 * COPY_STEP + 12_345


def _stored(tmp_path: Path, seed: int = 1) -> tuple[Path, str]:
    source = write_random_file(tmp_path / "source.bin", SIZE, seed=seed)
    storage = LocalStorage(tmp_path / "storage")
    stored = storage.store_file(source)
    return storage.layout.object_path(stored.sha1), stored.sha1


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_large_copy_is_the_object_with_a_plain_file_s_mode(tmp_path: Path) -> None:
    obj, sha1 = _stored(tmp_path)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "copy.bin").write_bytes(b"an older file, replaced")
    done = copy_verified(obj, dest / "copy.bin", parse_uri(f"sha1://{sha1}"), None)
    assert done.read_bytes() == obj.read_bytes()
    assert stat.S_IMODE(done.stat().st_mode) == 0o666 & ~_umask()
    assert _leftovers(dest) == []


def test_a_damaged_object_is_refused_and_nothing_appears(tmp_path: Path) -> None:
    obj, sha1 = _stored(tmp_path, seed=2)
    os.chmod(obj, 0o644)
    with open(obj, "r+b") as f:  # one byte flipped past the first copy step
        f.seek(COPY_STEP + 7)
        byte = f.read(1)
        f.seek(COPY_STEP + 7)
        f.write(bytes([byte[0] ^ 0xFF]))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(IntegrityError):
        copy_verified(obj, dest / "copy.bin", parse_uri(f"sha1://{sha1}"), None)
    assert list(dest.iterdir()) == []


def test_without_the_kernel_copy_the_loop_gives_the_same_copy(tmp_path: Path) -> None:
    obj, sha1 = _stored(tmp_path, seed=3)
    script = (
        "import os, sys\n"
        "del os.copy_file_range\n"
        "from kachery_client.dest_copy import copy_verified\n"
        "from kachery_core.content.uri import parse_uri\n"
        "from pathlib import Path\n"
        "copy_verified(Path(sys.argv[1]), sys.argv[2], parse_uri('sha1://' + sys.argv[3]), None)\n"
    )
    dest = tmp_path / "copy.bin"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(obj), str(dest), sha1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert dest.read_bytes() == obj.read_bytes()
    assert _leftovers(tmp_path) == []
