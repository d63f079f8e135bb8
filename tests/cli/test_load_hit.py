"""The fast `load-file` hit (`kachery_cli.entry`, `kachery_client.hit`) against the full
command (`kachery_cli.main`): the same output, error and exit code for every case, and
the fast path taken only for a plain hit in the embedded storage.

Each case runs both programs as real subprocesses in the test's environment; each writes
the modules it loaded to a file, so the test knows which path answered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

PROGRAM = """
import json, os, sys
from {module} import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
with open(os.environ["HIT_TEST_MODULES"], "w") as f:
    json.dump(sorted(sys.modules), f)
sys.exit(code)
"""
FAST = "kachery_cli.entry"
FULL = "kachery_cli.main"

Run = Tuple[int, str, str, List[str]]


def _run(module: str, kenv: Dict[str, str], tmp_path: Path, *args: str) -> Run:
    modules = tmp_path / f"modules-{module}.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(module=module), *args],
        capture_output=True,
        text=True,
        env={**kenv, "HIT_TEST_MODULES": str(modules)},
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr, json.loads(modules.read_text())


def _both(kenv: Dict[str, str], tmp_path: Path, *args: str) -> Tuple[Run, Run]:
    fast = _run(FAST, kenv, tmp_path, *args)
    full = _run(FULL, kenv, tmp_path, *args)
    assert fast[:3] == full[:3], f"fast path {fast[:3]} != full command {full[:3]}"
    return fast, full


def _stored(cli, tmp_path: Path, name: str = "data.bin") -> Tuple[Path, str]:
    src = tmp_path / name
    src.write_bytes(b"bytes already in the store\n" * 50)
    made = cli("store-file", str(src))
    assert made.returncode == 0, made.stderr
    return src, made.stdout.strip()


def test_a_hit_prints_the_same_path_without_click(cli, kenv, tmp_path: Path) -> None:
    src, uri = _stored(cli, tmp_path)
    cli("load-file", uri)  # warm the registry cache, as any earlier command does
    fast, full = _both(kenv, tmp_path, "load-file", uri)
    assert fast[0] == 0, fast[2]
    path = Path(fast[1].strip())
    assert path.read_bytes() == src.read_bytes()
    assert Path(kenv["KACHERY_STORAGE_DIR"]) in path.parents
    assert "click" not in fast[3], "the hit went through the full command"
    assert "kachery_core.store.local" not in fast[3]
    assert "click" in full[3]


def test_a_hit_records_its_use_in_the_index(cli, kenv, tmp_path: Path) -> None:
    """The fast path touches the index as `LocalStorage.find` does (same `PresentObjects`)."""
    import sqlite3

    _, uri = _stored(cli, tmp_path)
    cli("load-file", uri)
    sha1 = uri[len("sha1://") :].split("/")[0]
    db = Path(kenv["KACHERY_STORAGE_DIR"]) / "kachery-index.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE objects SET last_used = 0 WHERE sha1 = ?", (sha1,))
    fast = _run(FAST, kenv, tmp_path, "load-file", uri)
    assert fast[0] == 0 and "click" not in fast[3]
    with sqlite3.connect(db) as conn:
        (last_used,) = conn.execute(
            "SELECT last_used FROM objects WHERE sha1 = ?", (sha1,)
        ).fetchone()
    assert last_used > 0


@pytest.mark.parametrize(
    "uri",
    [
        "sha1://" + "0" * 40 + "/missing.bin",  # a miss
        "not-a-uri",
        "sha1dir://" + "1" * 40 + ".tree/a.bin",
    ],
)
def test_what_is_no_hit_gets_the_full_commands_answer(cli, kenv, tmp_path: Path, uri) -> None:
    _stored(cli, tmp_path)  # the registry cache is warm: only the URI sends it on
    fast, _ = _both(kenv, tmp_path, "load-file", uri)
    assert fast[0] == 1 and fast[2].startswith("Error: "), fast
    assert "click" in fast[3]


def test_a_linked_file_is_left_to_the_full_command(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "linked.bin"
    src.write_bytes(b"linked, not copied\n")
    uri = cli("link-file", str(src)).stdout.strip()
    fast, _ = _both(kenv, tmp_path, "load-file", uri)
    assert Path(fast[1].strip()) == src
    assert "click" in fast[3]


def test_options_and_other_backends_take_the_full_path(cli, kenv, tmp_path: Path) -> None:
    _, uri = _stored(cli, tmp_path)
    dest = tmp_path / "copy.bin"
    fast, _ = _both(kenv, tmp_path, "load-file", uri, "--dest", str(dest))
    assert fast[0] == 0 and Path(fast[1].strip()) == dest and "click" in fast[3]

    offline = tmp_path / "offline"
    offline.mkdir()
    env = {**kenv, "KACHERY_OFFLINE_STORAGE_DIR": str(offline)}
    fast, _ = _both(env, tmp_path, "load-file", uri)  # the offline store lacks it
    assert fast[0] == 1 and "offline" in fast[2] and "click" in fast[3]

    env = {**kenv, "KACHERY_EXPECTED_NODE_ID": "a" * 64}
    fast, _ = _both(env, tmp_path, "load-file", uri)
    assert "click" in fast[3]


def test_a_cold_registry_cache_takes_the_full_path(cli, kenv, tmp_path: Path) -> None:
    _, uri = _stored(cli, tmp_path)
    for cached in (tmp_path / "cache").rglob("registry-*.json"):
        cached.unlink()
    fast = _run(FAST, kenv, tmp_path, "load-file", uri)
    assert fast[0] == 0 and "click" in fast[3]
    again = _run(FAST, kenv, tmp_path, "load-file", uri)  # the full path wrote the cache
    assert again[1] == fast[1] and "click" not in again[3]


def test_a_node_answering_takes_the_full_path(cli, kenv, tmp_path: Path, make_node) -> None:
    """The object is in the storage directory, but a node answers the probe there: the
    http backend answers, as it did before the fast path (which would have said the same
    path without asking the node)."""
    node_storage = tmp_path / "node-storage"
    node = make_node(storage_dir=node_storage)
    env = {**kenv, "KACHERY_DAEMON_PORT": str(node.port), "KACHERY_STORAGE_DIR": str(node_storage)}
    src = tmp_path / "data.bin"
    src.write_bytes(b"stored through the node\n")
    made = cli("store-file", str(src), env=env)
    assert made.returncode == 0, made.stderr
    cli("load-file", made.stdout.strip(), env=env)  # the registry cache is warm
    fast, _ = _both(env, tmp_path, "load-file", made.stdout.strip())
    assert fast[0] == 0, fast[2]
    assert node_storage in Path(fast[1].strip()).parents
    assert "click" in fast[3], "the fast path answered without asking the node"
