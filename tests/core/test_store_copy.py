"""The store path: kernel copy + hashing of the staging file, its fallback, the small path.

Every case checks what matters for data safety: the object holds exactly the source's
bytes under exactly their SHA-1, it is read-only, and a refused store leaves nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
from conftest import command, write_random_file

from kachery_core.content.hashing import BLOCK_SIZE, COPY_STEP, hash_file_copy
from kachery_core.content.manifest import CHUNK_SIZE, MANIFEST_THRESHOLD, Chunk, Manifest
from kachery_core.errors import IntegrityError
from kachery_core.store.local import LocalStorage

SIZES = [
    0,
    1,
    4095,
    4096,
    BLOCK_SIZE - 1,
    BLOCK_SIZE,
    (4 << 20) - 1,
    20_000_000,
    20_000_001,
    45_000_003,
]


def _objects(root: Path) -> List[Path]:
    sha1_dir = root / "sha1"
    return sorted(p for p in sha1_dir.rglob("*") if p.is_file()) if sha1_dir.exists() else []


def _leftovers(storage: LocalStorage) -> List[Path]:
    return list(storage.temp_dir.iterdir()) if storage.temp_dir.exists() else []


def _check_stored(storage: LocalStorage, source: Path, sha1: str, manifest_sha1: Optional[str]):
    """The object is the source byte for byte, read-only; the manifest is right."""
    data = source.read_bytes()
    assert sha1 == hashlib.sha1(data).hexdigest()
    path = storage.layout.object_path(sha1)
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o444
    if len(data) > MANIFEST_THRESHOLD:
        assert manifest_sha1 is not None
        chunks = tuple(
            Chunk(
                start,
                min(start + CHUNK_SIZE, len(data)),
                hashlib.sha1(data[start : start + CHUNK_SIZE]).hexdigest(),
            )
            for start in range(0, len(data), CHUNK_SIZE)
        )
        assert storage.load_manifest(manifest_sha1) == Manifest(len(data), sha1, chunks)
    else:
        assert manifest_sha1 is None


@pytest.mark.parametrize("size", SIZES)
def test_stored_object_is_the_source_byte_for_byte(tmp_path: Path, size: int) -> None:
    source = write_random_file(tmp_path / "src.bin", size, seed=size % 1000)
    storage = LocalStorage(tmp_path / "storage")
    seen: List[int] = []
    stored = storage.store_file(source, progress=seen.append)
    assert stored.size == size
    _check_stored(storage, source, stored.sha1, stored.manifest_sha1)
    assert _leftovers(storage) == []
    if size:
        assert seen and seen[-1] == size and seen == sorted(seen)
    again = storage.store_file(source)  # the same bytes again: same answer, one object
    assert again == stored
    _check_stored(storage, source, again.sha1, again.manifest_sha1)


@pytest.mark.parametrize("size", [0, 4096, BLOCK_SIZE + 1, 20_000_001])
def test_stream_source_takes_the_read_write_path(tmp_path: Path, size: int) -> None:
    """A pipe cannot be copied in the kernel: the read/write loop stores it, byte for byte."""
    source = write_random_file(tmp_path / "src.bin", size, seed=3)
    storage = LocalStorage(tmp_path / "storage")
    with subprocess.Popen(["cat", str(source)], stdout=subprocess.PIPE) as cat:
        assert cat.stdout is not None
        stored = storage.store_stream(cat.stdout)
    assert cat.returncode == 0
    assert stored.size == size
    _check_stored(storage, source, stored.sha1, stored.manifest_sha1)
    assert _leftovers(storage) == []


def test_stdin_store_through_the_cli(cli, kenv: Dict[str, str], tmp_path: Path) -> None:
    source = write_random_file(tmp_path / "src.bin", 20_000_001, seed=4)
    result = cli("store-file", "-", input=source.read_bytes())
    assert result.returncode == 0, result.stderr
    storage = LocalStorage(Path(kenv["KACHERY_STORAGE_DIR"]))
    sha1 = result.stdout.strip().split("/")[2].split("?")[0]
    manifest_sha1 = result.stdout.strip().rsplit("=", 1)[1]
    _check_stored(storage, source, sha1, manifest_sha1)


def test_no_kernel_copy_on_this_platform(tmp_path: Path) -> None:
    """A Python without os.copy_file_range (macOS, Windows) uses the read/write loop."""
    source = write_random_file(tmp_path / "src.bin", 20_000_001, seed=5)
    script = (
        "import os, sys\n"
        "del os.copy_file_range\n"
        "from pathlib import Path\n"
        "from kachery_core.content.hashing import hash_file_copy\n"
        "from kachery_core.store.local import LocalStorage\n"
        "assert hash_file_copy(0, 1, 10) is None\n"
        "s = LocalStorage(Path(sys.argv[2])).store_file(Path(sys.argv[1]))\n"
        "print(s.sha1, s.manifest_sha1)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(source), str(tmp_path / "storage")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    sha1, manifest_sha1 = proc.stdout.split()
    storage = LocalStorage(tmp_path / "storage")
    _check_stored(storage, source, sha1, manifest_sha1)
    assert _leftovers(storage) == []


def _shm_dir(tmp_path: Path) -> Path:
    """A directory on another filesystem than `tmp_path` whose copy_file_range gives EXDEV."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) here")
    return shm / f"kachery-test-{os.getpid()}-{os.urandom(3).hex()}"


def test_copy_across_filesystems_falls_back(tmp_path: Path) -> None:
    """The kernel refuses some cross-filesystem copies (EXDEV): the store still works."""
    other = _shm_dir(tmp_path)
    other.mkdir()
    try:
        source = write_random_file(other / "src.bin", 20_000_001, seed=6)
        with open(source, "rb") as a, open(tmp_path / "probe", "wb+") as b:
            refused = hash_file_copy(a.fileno(), b.fileno(), 100) is None
            assert os.fstat(b.fileno()).st_size == (0 if refused else 100)
        storage = LocalStorage(tmp_path / "storage")
        stored = storage.store_file(source)
        _check_stored(storage, source, stored.sha1, stored.manifest_sha1)
        assert _leftovers(storage) == []
    finally:
        shutil.rmtree(other)


def _grow(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"more bytes")


def _shrink(path: Path) -> None:
    os.truncate(path, COPY_STEP + 12345)


def _rewrite_in_place(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(COPY_STEP * 3)
        f.write(b"\0" * 100)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("change", [_grow, _shrink, _rewrite_in_place], ids=lambda f: f.__name__)
@pytest.mark.parametrize("kernel_copy", [True, False], ids=["kernel-copy", "read-write"])
def test_source_changing_during_the_store_is_refused(
    tmp_path: Path, change: Callable[[Path], None], kernel_copy: bool
) -> None:
    """The file really changes (on disk) while the store runs: refused, nothing stored.
    The change happens at the first progress report, with the copy under way. A source on
    another filesystem (/dev/shm) takes the read/write path (the kernel says EXDEV)."""
    where = tmp_path if kernel_copy else _shm_dir(tmp_path)
    where.mkdir(exist_ok=True)
    try:
        source = write_random_file(where / "src.bin", 45_000_003, seed=7)
        storage = LocalStorage(tmp_path / "storage")
        calls: List[int] = []

        def progress(done: int) -> None:
            if not calls:
                change(source)
            calls.append(done)

        with pytest.raises(IntegrityError, match="changed while it was being read"):
            storage.store_file(source, progress=progress)
        assert calls
        assert _objects(storage.root) == []
        assert _leftovers(storage) == []
    finally:
        if not kernel_copy:
            shutil.rmtree(where)


def test_small_source_that_grew_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "small.bin"
    source.write_bytes(os.urandom(1000))
    from kachery_core.store.input_file import check_unchanged, read_small

    st = os.stat(source)
    with open(source, "ab") as f:
        f.write(b"x")
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: the size tells
    with open(source, "rb", buffering=0) as f:
        data = read_small(f, st.st_size)  # type: ignore[arg-type]
        assert len(data) == st.st_size + 1  # one byte too many: the store sees the growth
        with pytest.raises(IntegrityError, match="changed while it was being read"):
            check_unchanged(f.fileno(), st, len(data), str(source))


def test_damaged_small_object_is_replaced_and_identical_one_kept(tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(5000))
    storage = LocalStorage(tmp_path / "storage")
    stored = storage.store_file(source)
    path = storage.layout.object_path(stored.sha1)
    inode = path.stat().st_ino
    assert storage.store_file(source) == stored
    assert path.stat().st_ino == inode  # identical: not rewritten
    os.chmod(path, 0o644)
    path.write_bytes(b"rotten")
    os.chmod(path, 0o444)
    assert storage.store_file(source) == stored
    assert path.read_bytes() == source.read_bytes()  # damaged: replaced
    assert path.stat().st_mode & 0o777 == 0o444


def test_directories_removed_behind_a_storage_are_made_again(tmp_path: Path) -> None:
    """Object directories are remembered as existing; one removed since is made again."""
    storage = LocalStorage(tmp_path / "storage")
    small, large = tmp_path / "small.bin", tmp_path / "large.bin"
    small.write_bytes(os.urandom(100))
    write_random_file(large, BLOCK_SIZE + 5, seed=9)
    first = [storage.store_file(small), storage.store_file(large)]
    for tree in ("sha1", "tmp"):
        shutil.rmtree(storage.root / tree)
    again = [storage.store_file(small), storage.store_file(large)]
    assert again == first
    for stored, source in zip(again, (small, large)):
        _check_stored(storage, source, stored.sha1, stored.manifest_sha1)


def test_store_bytes_checks_the_expected_hash(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    with pytest.raises(IntegrityError, match="expected"):
        storage.store_bytes(b"abc", expected_sha1="0" * 40)
    assert _objects(storage.root) == [] and _leftovers(storage) == []
    stored = storage.store_bytes(b"abc", expected_sha1=hashlib.sha1(b"abc").hexdigest())
    assert storage.layout.object_path(stored.sha1).read_bytes() == b"abc"


def test_large_store_memory_stays_flat(kenv: Dict[str, str], tmp_path: Path) -> None:
    """The client's peak RSS while storing 300 MB stays under 64 MiB (mapped windows are
    unmapped as the hashers move on). Measured by /usr/bin/time, whose own RSS is small."""
    time_bin = Path("/usr/bin/time")
    if not time_bin.exists():
        pytest.skip("no /usr/bin/time here")
    source = write_random_file(tmp_path / "big.bin", 300_000_000, seed=10)
    env = dict(kenv)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.monotonic()
    proc = subprocess.run(
        [str(time_bin), "-f", "maxrss %M", command("kachery-client"), "store-file", str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 300
    peak_kib = int(proc.stderr.strip().splitlines()[-1].split()[-1])
    assert peak_kib < 64 * 1024, f"peak RSS {peak_kib} KiB"
    storage = LocalStorage(Path(kenv["KACHERY_STORAGE_DIR"]))
    sha1 = proc.stdout.strip().split("/")[2].split("?")[0]
    assert storage.layout.object_path(sha1).stat().st_size == 300_000_000
