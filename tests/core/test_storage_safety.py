"""Crash safety and concurrency of stores, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import command, sha1_file, write_random_file

from kachery_core.store.layout import StorageLayout
from kachery_core.store.local import LocalStorage


def _objects(root: Path) -> list[Path]:
    return sorted(p for p in (root / "sha1").rglob("*") if p.is_file())


def test_eight_processes_store_the_same_file(kenv, tmp_path: Path) -> None:
    src = write_random_file(tmp_path / "shared.bin", 200_000_000, seed=8)
    procs = [
        subprocess.Popen(
            [command("kachery-client"), "store-file", str(src)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=kenv,
        )
        for _ in range(8)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outputs.append(out.decode().strip())
    assert len(set(outputs)) == 1
    uri = outputs[0]
    sha1 = sha1_file(src)
    assert uri.startswith(f"sha1://{sha1}/shared.bin?manifest=")
    root = Path(kenv["KACHERY_STORAGE_DIR"])
    objects = _objects(root)
    manifest_sha1 = uri.rsplit("=", 1)[1]
    layout = StorageLayout(root)
    assert objects == sorted([layout.object_path(sha1), layout.object_path(manifest_sha1)])
    assert sha1_file(layout.object_path(sha1)) == sha1
    assert list((root / "tmp").iterdir()) == []  # no leftovers


def test_store_killed_halfway_leaves_no_object(kenv, tmp_path: Path) -> None:
    src = write_random_file(tmp_path / "big.bin", 500_000_000, seed=9)
    sha1 = sha1_file(src)
    root = Path(kenv["KACHERY_STORAGE_DIR"])
    temp = root / "tmp"
    proc = subprocess.Popen(
        [command("kachery-client"), "store-file", str(src)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=kenv,
    )
    try:
        deadline = time.monotonic() + 60
        staging = None
        while time.monotonic() < deadline:
            parts = list(temp.glob("*.part")) if temp.exists() else []
            # The staging file is sized up front; its allocated blocks show the copy's progress.
            if parts and parts[0].stat().st_blocks * 512 > 50_000_000:
                staging = parts[0]
                break
            time.sleep(0.005)
        assert staging is not None, "the store never got going"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    layout = StorageLayout(root)
    assert not layout.object_path(sha1).exists()
    assert _objects(root) == []  # no partial object anywhere
    assert staging.exists()  # the dead process's staging file, until the next store

    again = subprocess.run(
        [command("kachery-client"), "store-file", str(src)], capture_output=True, env=kenv
    )
    assert again.returncode == 0, again.stderr
    assert sha1_file(layout.object_path(sha1)) == sha1
    assert not staging.exists()  # swept: its process no longer exists
    assert list(temp.iterdir()) == []


def test_staging_files_of_live_processes_are_kept(kenv, tmp_path: Path) -> None:
    root = Path(kenv["KACHERY_STORAGE_DIR"])
    store = LocalStorage(root)
    (root / "tmp").mkdir(parents=True)
    from kachery_core.store import staging

    live = root / "tmp" / f"{staging.HOST}-{os.getpid()}-abc.part"
    live.write_bytes(b"in progress")
    store.store_bytes(b"something else")
    assert live.exists()


def test_existing_object_stays_single_and_read_only(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(1000))
    first = cli("store-file", str(src)).stdout
    second = cli("store-file", str(src)).stdout
    assert first == second
    objects = _objects(Path(kenv["KACHERY_STORAGE_DIR"]))
    assert len(objects) == 1
    assert objects[0].stat().st_mode & 0o777 == 0o444
