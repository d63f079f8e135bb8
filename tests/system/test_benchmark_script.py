"""The benchmark script runs end to end (on a small file; timings are not checked)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

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
    startup = [name for name in rows if name.startswith("load-file hit (startup, ")]
    assert startup and startup[0].endswith(("regular install)", "editable install)")), rows
    assert rows[startup[0]]["baseline"] == "python -c 'import click'"
    assert set(rows) - set(startup) == {
        "store-file",
        "store 4 MiB vs hashing floor",
        "link-file",
        "cat-file > /dev/null",
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


def _table(stdout: str) -> Dict[str, Dict[str, str]]:
    """The Markdown table compare_rows.py prints: {step: {column: cell}}."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0]] = dict(zip(header[1:], cells[1:]))
    assert header[0] == "step"
    return table


def test_compare_rows_script_prints_the_side_by_side_table(kenv, tmp_path: Path) -> None:
    """benchmarks/compare_rows.py on 10 files and 2 MiB, one repeat, without dvc (its
    install takes over a minute); git-annex, which the [test] extras install, is run."""
    out = tmp_path / "compare.json"
    script = Path(__file__).parents[2] / "benchmarks" / "compare_rows.py"
    argv = [sys.executable, str(script), "--small-files", "10", "--big-mib", "2"]
    argv += ["--repeats", "1", "--no-dvc", "--out", str(out), "--dir", str(tmp_path)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=kenv, timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = _table(proc.stdout)
    steps = ["store 10 x 4 KiB", "get them elsewhere", "store 2 MiB", "get it elsewhere"]
    assert list(table) == steps
    columns = ["kachery embedded", "kachery via node", "dvc", "git-annex"]
    ratio = "via node / faster (target <= 0.5x)"
    for step in steps:
        assert list(table[step]) == [*columns, ratio]
        for column in columns[:2]:  # "0.42 s, 36 MiB"
            seconds, rss = re.fullmatch(r"([0-9.]+) s, ([0-9]+) MiB", table[step][column]).groups()
            assert float(seconds) > 0 and 0 < int(rss) < 1024
        assert table[step]["dvc"] == "not run"
    figures = json.loads(out.read_text())
    assert [step["step"] for step in figures["steps"]] == steps
    assert 0 < figures["node_peak_rss_mib"] < 1024
    assert list(tmp_path.glob("kachery-bench-compare-*")) == []  # cleaned up
    if not _git_annex_installed():
        assert "pip install git-annex" in proc.stderr  # says what to install
        assert all(table[step]["git-annex"] == "not run" for step in steps)
        assert all(table[step][ratio] == "no baseline run" for step in steps)
        pytest.skip("git-annex is not installed (pip install git-annex): no git-annex column")
    for step in figures["steps"]:
        assert step["cells"]["git-annex"]["seconds"] > 0
        assert step["faster"] == "git-annex" and step["ratio"] > 0
        assert re.fullmatch(r"[0-9.]+x of git-annex, (meets|misses)", table[step["step"]][ratio])
