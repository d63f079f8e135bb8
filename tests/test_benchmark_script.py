"""The benchmark script runs end to end (on a small file; timings are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_benchmark_script_produces_every_row(kenv, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    script = Path(__file__).parent.parent / "benchmarks" / "run.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--size-mib",
            "4",
            "--quick",
            "--out",
            str(out),
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=kenv,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {
        "store-file",
        "store 4 MiB vs hashing floor",
        "link-file",
        "cat-file > /dev/null",
        "load-file (startup)",
        "store-file via node",
        "load-file via node",
        "load via remote",
        "http round trip x8 (p99)",
        "remote round trip x8 (p99)",
        "grpc round trip x8 (p99)",
        "load via grpc",
        "4 MiB A->B via channel",
        "verified cat-file via node (http)",
        "verified cat-file via remote",
    }
    for row in rows.values():
        assert row["kachery_seconds"] > 0 and row["baseline_seconds"] > 0
        assert 0 < row["peak_rss_mib"] < 1024
    assert list(tmp_path.glob("kachery-bench-*")) == []  # cleaned up
