"""The benchmark script runs end to end (on a small file; timings are not checked)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_benchmark_script_produces_every_row(kenv, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    script = Path(__file__).parents[2] / "benchmarks" / "run.py"
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


def _git_annex_installed() -> bool:
    """As benchmarks/dataset_rows.py looks: on PATH, or beside this Python (pip install)."""
    return bool(shutil.which("git-annex")) or (Path(sys.executable).parent / "git-annex").exists()


def test_dataset_rows_script_produces_every_row(kenv, tmp_path: Path) -> None:
    """benchmarks/dataset_rows.py on tiny trees (20 and 40 files), one repeat each."""
    out = tmp_path / "datasets.json"
    script = Path(__file__).parents[2] / "benchmarks" / "dataset_rows.py"
    argv = [sys.executable, str(script), "--files", "20", "--big-files", "40"]
    argv += ["--loop-files", "4", "--repeats", "1", "--out", str(out), "--dir", str(tmp_path)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=kenv, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    baseline = {
        "store -r 40 files": "store -r 20 files",
        "store -r via http": "store -r 20 files",
        "store -r via remote": "store -r 20 files",
        "load -r via remote": "store -r 20 files",
        "load -r via grpc": "store -r 20 files",
        "20 store-file procs": "store -r 20 files",
    }
    for name, base in baseline.items():
        assert rows[name]["baseline"] == base
    for row in rows.values():
        assert row["kachery_seconds"] > 0 and row["baseline_seconds"] > 0
        assert 0 < row["peak_rss_mib"] < 1024
        assert row["verdict"] in ("meets", "misses")
    assert "verdict" in proc.stdout  # the table
    assert list(tmp_path.glob("kachery-bench-datasets-*")) == []  # cleaned up
    if not _git_annex_installed():
        assert "pip install git-annex" in proc.stderr  # says what to install
        assert set(rows) == set(baseline)
        # The [test] extras install git-annex wherever PyPI has it (Python 3.9 and newer).
        pytest.skip("git-annex is not installed (pip install git-annex): no git annex row")
    assert set(rows) == {*baseline, "store -r 20 files"}
    assert rows["store -r 20 files"]["baseline"] == "git annex add"
