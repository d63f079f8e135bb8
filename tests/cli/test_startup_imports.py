"""A `load-file` of an object already present imports nothing it does not need.

Start-up is most of what such a hit costs (benchmarks/run.py compares it with
`python -c 'import click'`), so the check here is on behaviour, not time: a real hit in a
fresh interpreter, embedded backend, warm registry cache, and the modules it loaded. The
program is the console script's own entry point (`kachery_cli.entry`), which answers a
plain hit before click and the backends are imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

HEAVY = [
    # third-party libraries the project depends on, for other paths
    "numpy",
    "requests",
    "urllib3",
    "grpc",
    "google.protobuf",
    "aiohttp",
    "boto3",
    "botocore",
    "cryptography",
    "tqdm",
    "jinja2",
    "fsspec",
    "pluggy",  # the registry is read from its cache
    # standard-library machinery a hit has no use for
    "importlib.metadata",  # no entry-point scan with a warm cache
    "asyncio",
    "concurrent.futures",
    "http.client",  # nothing answered the probe
    "ssl",
    "email",
    "socket",  # the probe connects through _socket
    "selectors",
    "logging",
    "tempfile",
    "shutil",
    "hashlib",  # a hit hashes nothing
    "tomllib",  # no config file to parse
    "tomli",
    "subprocess",
    # the full command and the backends: a plain hit is answered before them
    # (kachery_cli.entry, kachery_client.hit)
    "click",
    "kachery_cli.main",
    "kachery_transports",
    "kachery_core.store.local",  # the store classes
    "kachery_core.store.staging",
    "kachery_core.store.link_record",
    "kachery_core.content.hashing",
    "kachery_core.backend.base",
]

WRAPPER = """
import json, sys
from kachery_cli.entry import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _hit(kenv: Dict[str, str], uri: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WRAPPER, "load-file", uri],
        capture_output=True,
        text=True,
        env=kenv,
        timeout=120,
    )


def _loaded(proc: subprocess.CompletedProcess) -> List[str]:
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), proc.stderr
    return list(report["modules"])


def test_a_load_file_hit_imports_none_of_the_heavy_modules(cli, kenv, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(b"bytes already in the store\n" * 100)
    uri = cli("store-file", str(src)).stdout.strip()
    first = _hit(kenv, uri)  # a cold cache may load plugins; the next hit must not
    assert first.returncode == 0, first.stderr

    proc = _hit(kenv, uri)
    path = Path(proc.stdout.strip())
    assert path.read_bytes() == src.read_bytes()
    assert Path(kenv["KACHERY_STORAGE_DIR"]) in path.parents  # the embedded store's copy
    loaded = _loaded(proc)
    heavy = [name for name in HEAVY if any(m == name or m.startswith(name + ".") for m in loaded)]
    assert heavy == [], f"a load-file hit imported {heavy}"
    assert "sqlite3" in loaded  # it still records the use in the store's index


def test_the_check_sees_an_import_when_there_is_one(kenv, tmp_path: Path) -> None:
    """The same wrapper on a command that needs more (the hashes of `store-file`, through
    the full command) does show those modules: the list above is not vacuous."""
    src = tmp_path / "new.bin"
    src.write_bytes(b"new bytes\n")
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, "store-file", str(src)],
        capture_output=True,
        text=True,
        env=kenv,
        timeout=120,
    )
    loaded = _loaded(proc)
    assert "hashlib" in loaded
    assert "click" in loaded and "kachery_core.store.local" in loaded  # the full command
