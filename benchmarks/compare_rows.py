"""Side by side with dvc and git-annex: store a dataset, then get it elsewhere.

    python benchmarks/compare_rows.py                        # 1,000 x 4 KiB and 1 GiB
    python benchmarks/compare_rows.py --small-files 20 --big-mib 4 --repeats 1 --no-dvc

Prints a Markdown table (rows: store the small files, get them elsewhere, store the big
file, get it elsewhere; columns: kachery embedded, kachery through a node, dvc, git-annex)
and the ratio of kachery through a node to the faster of dvc and git-annex on each row,
against a target of 0.5x. Every side runs once per repeat, interleaved (see
`dataset_rows.interleave`), on the same inputs, page cache warm; figures are medians.
dvc and git-annex come from PyPI, into a venv under the system temp dir made once
(`tool_venv`); a git-annex already on PATH or beside this Python is used as it is.
Timings never fail anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from compare_sides import (
    Inputs,
    NodeRuns,
    annex_sides,
    dvc_sides,
    embedded_sides,
    node_sides,
)
from dataset_rows import Side, clean_env, find_git_annex, git_env, interleave, write_tree
from run import KACHERY, _write_random, remove_tree
from tool_venv import tool_venv

TARGET = 0.5
"""Kachery through a node: at most this multiple of the faster of dvc and git-annex."""
SYSTEMS = ("kachery embedded", "kachery via node", "dvc", "git-annex")
RATIO_COLUMN = f"via node / faster (target <= {TARGET}x)"


VENV = "kachery-compare-venv"
GIT_ANNEX_MISSING = (
    "git-annex is not on PATH nor beside this Python, and `pip install git-annex` failed "
    "(PyPI has it for Python 3.9 and newer; or `apt-get install git-annex`): "
    "the git-annex column is left out."
)


def baseline_tools(with_dvc: bool) -> Tuple[Optional[Path], Optional[Path]]:
    """(dvc's executable, the folder holding git-annex), pip-installing what is missing into
    one venv; None for a tool left out (dvc with --no-dvc; git-annex if it cannot install)."""
    dvc: Optional[Path] = None
    if with_dvc:
        venv = tool_venv(VENV, ["dvc"], _has_executable("dvc"))
        if venv is None:
            raise SystemExit("`pip install dvc` failed; --no-dvc leaves the dvc column out")
        dvc = venv / "bin" / "dvc"
    annex_dir = find_git_annex()
    if annex_dir is None:
        venv = tool_venv(VENV, ["git-annex"], _has_executable("git-annex"))
        annex_dir = None if venv is None else venv / "bin"
    if annex_dir is None:
        print(GIT_ANNEX_MISSING, file=sys.stderr, flush=True)
    return dvc, annex_dir


def _has_executable(name: str) -> str:
    """Python code that fails unless the venv running it has `bin/<name>`."""
    return (
        "import os, sys\n"
        f"sys.exit(not os.path.exists(os.path.join(os.path.dirname(sys.executable), {name!r})))"
    )


def make_inputs(work: Path, small_files: int, big_mib: int, env: Dict[str, str]) -> Inputs:
    """The tree and the big file, and their URIs from one untimed store each (which also
    pages the CLI in and leaves both inputs in the page cache)."""
    tree, big_file = work / "tree", work / "big" / "data.bin"
    write_tree(tree, small_files)
    big_file.parent.mkdir(parents=True)
    _write_random(big_file, big_mib << 20)
    warm_env = dict(env, KACHERY_STORAGE_DIR=str(work / "warm-storage"))

    def store(*argv: str) -> str:
        out = subprocess.run([KACHERY, "store-file", *argv], env=warm_env, capture_output=True)
        if out.returncode != 0:
            raise SystemExit(f"store-file {' '.join(argv)} failed: {out.stderr.decode()}")
        return out.stdout.decode().strip()

    inputs = Inputs(work, tree, big_file, store("-r", str(tree)), store(str(big_file)), env)
    dest = work / "warm-dest"
    subprocess.run(
        [KACHERY, "load-file", "-r", inputs.tree_uri, "--dest", str(dest)],
        env=warm_env,
        capture_output=True,
        check=True,
    )
    remove_tree(dest)
    remove_tree(work / "warm-storage")
    return inputs


def compare(
    work: Path, small_files: int, big_mib: int, repeats: int, with_dvc: bool
) -> Dict[str, object]:
    """Measure every side, interleaved; return the steps' figures (see `summarise`)."""
    dvc, annex_dir = baseline_tools(with_dvc)
    work.mkdir(parents=True, exist_ok=True)
    env = clean_env(work)
    inputs = make_inputs(work, small_files, big_mib, env)
    genv = git_env(env, annex_dir or Path(sys.executable).parent)
    runs = NodeRuns(work, env)
    sides = embedded_sides(inputs) + node_sides(inputs, runs)
    sides += dvc_sides(inputs, dvc, genv) if dvc else []
    sides += annex_sides(inputs, genv) if annex_dir else []
    try:
        interleave(sides, repeats)
    finally:
        runs.stop()
    by_name = {side.name: side for side in sides}
    big = f"{big_mib >> 10} GiB" if big_mib % 1024 == 0 else f"{big_mib} MiB"
    steps = [
        (f"store {small_files:,} x 4 KiB", "store tree"),
        ("get them elsewhere", "get tree"),
        (f"store {big}", "store big"),
        ("get it elsewhere", "get big"),
    ]
    return {
        "small_files": small_files,
        "big_mib": big_mib,
        "repeats": repeats,
        "node_peak_rss_mib": runs.peak_rss_mib,
        "steps": [summarise(label, what, by_name) for label, what in steps],
    }


def summarise(label: str, what: str, sides: Dict[str, Side]) -> Dict[str, object]:
    """One row: per system the median seconds (dvc's store: of add + push per repeat)."""
    action, kind = what.split()
    annex = sides.get(f"git annex {'add' if action == 'store' else 'get'} {kind}")
    cells: Dict[str, Optional[Dict[str, object]]] = {
        "kachery embedded": figures(sides[f"embedded {what}"]),
        "kachery via node": figures(sides[f"node {what}"]),
        "dvc": None,
        "git-annex": None if annex is None else figures(annex),
    }
    if action == "store" and f"dvc add {kind}" in sides:
        add, push = sides[f"dvc add {kind}"], sides[f"dvc push {kind}"]
        totals = [a + p for a, p in zip(add.seconds, push.seconds)]
        cells["dvc"] = dict(
            seconds=statistics.median(totals),
            add=add.median,
            push=push.median,
            runs=totals,
            peak_rss_mib=max(add.peak_rss, push.peak_rss),
        )
    elif f"dvc get {kind}" in sides:
        cells["dvc"] = figures(sides[f"dvc get {kind}"])
    row: Dict[str, object] = dict(step=label, cells=cells, target=TARGET)
    baselines = [name for name in ("dvc", "git-annex") if cells[name] is not None]
    if baselines:
        faster = min(baselines, key=lambda name: seconds_of(cells[name]))
        ratio = seconds_of(cells["kachery via node"]) / seconds_of(cells[faster])
        row.update(faster=faster, ratio=ratio, verdict="meets" if ratio <= TARGET else "misses")
    return row


def figures(side: Side) -> Dict[str, object]:
    return dict(seconds=side.median, runs=side.seconds, peak_rss_mib=side.peak_rss)


def seconds_of(cell: Optional[Dict[str, object]]) -> float:
    assert cell is not None
    value = cell["seconds"]
    assert isinstance(value, float)
    return value


def markdown(result: Dict[str, object]) -> str:
    lines = [
        "| step | " + " | ".join(SYSTEMS) + f" | {RATIO_COLUMN} |",
        "| --- " * (len(SYSTEMS) + 2) + "|",
    ]
    for step in result["steps"]:  # type: ignore[attr-defined]
        cells = [cell_text(step["cells"][name], name.startswith("kachery")) for name in SYSTEMS]
        ratio = (
            f"{step['ratio']:.2f}x of {step['faster']}, {step['verdict']}"
            if "ratio" in step
            else "no baseline run"
        )
        lines.append(f"| {step['step']} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def cell_text(cell: Optional[Dict[str, object]], with_rss: bool) -> str:
    """Seconds; for kachery, the command's peak RSS too (the JSON has every side's)."""
    if cell is None:
        return "not run"
    if "add" in cell:
        return f"{cell['add']:.2f} s (`add`) + {cell['push']:.2f} s (`push`)"
    text = f"{seconds_of(cell):.2f} s"
    return text + (f", {cell['peak_rss_mib']:.0f} MiB" if with_rss else "")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-files", type=int, default=1000, help="files of 4 KiB")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-dvc", action="store_true", help="leave dvc out (it takes a minute to install)"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temp dir)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kachery-bench-compare-", dir=args.dir))
    try:
        result = compare(work, args.small_files, args.big_mib, args.repeats, not args.no_dvc)
    finally:
        remove_tree(work)
    print(markdown(result))
    print(
        f"\n(medians of {args.repeats}; kachery cells: seconds, the command's peak RSS; "
        f"node peak RSS {result['node_peak_rss_mib']:.0f} MiB; timings never fail anything)"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
