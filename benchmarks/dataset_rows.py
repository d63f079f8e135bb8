"""Benchmark rows of datasets: whole trees of small files stored and loaded in one command.

    python benchmarks/dataset_rows.py                    # 1,000 and 10,000 files of 4 KiB
    python benchmarks/dataset_rows.py --files 20 --big-files 60 --loop-files 5 --repeats 1

Every side runs once per repeat, interleaved, so the ratios come from the same minutes of a
shared, noisy machine; each figure is the median of the repeats. Rows:

- `store-file -r` of N files (embedded `local` backend, fresh storage dir each repeat) vs
  `git annex add --backend=SHA1 .` of the same tree (fresh `git init` + `git annex init`
  copy each repeat; only the add is timed). Target <= 0.5x. Skipped, saying what to
  install, when git-annex is missing.
- `store-file -r` of 10 N files vs N files: target <= 11x (linear, 10% slack).
- `store-file -r` of the N-file tree through a node on this machine, over `http` (the
  client-auth code: the node reads the files by path; target <= 1.5x the embedded store)
  and over `remote` (a token: the bytes travel; target <= 2x), a fresh node on an empty
  storage dir before each repeat (untimed), so every object is new, as embedded.
- `load-file -r URI --dest D` of the N-file tree from a node into an empty client cache,
  over `remote` (target <= 1.5x the store) and `grpc` (no target).
- the per-file loop (one `store-file` process per file), timed on --loop-files files and
  scaled to N: the way a tree was stored before `-r`, for before/after.

Every row's RSS is the client's peak (wait4's ru_maxrss; for the loop, the largest of its
processes); target 64 MiB. Timings never fail anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from node_rows import Node, _token
from run import KACHERY, Row, free_port, remove_tree, run_timed

FILE_SIZE = 4096
GIT_ANNEX_MISSING = (
    "git-annex not found (neither on PATH nor beside this Python): install it with "
    "`.venv/bin/pip install git-annex` (PyPI ships a standalone build) or your system's "
    "package (e.g. `apt-get install git-annex`); skipping the git annex row."
)


def write_tree(root: Path, count: int) -> None:
    """`count` files of 4 KiB random bytes in 4 x 5 nested folders (no two files equal)."""
    for i in range(count):
        path = root / f"part{i % 4}" / f"group{(i // 4) % 5}" / f"file{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(FILE_SIZE))


def tree_files(root: Path) -> List[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def find_git_annex() -> Optional[Path]:
    """The folder holding `git-annex`: PATH first, then this venv's bin (pip install)."""
    found = shutil.which("git-annex")
    if found:
        return Path(found).parent
    beside = Path(sys.executable).parent / "git-annex"
    return beside.parent if beside.exists() else None


def git_env(env: Dict[str, str], annex_dir: Path) -> Dict[str, str]:
    """`git annex` finds git-annex on PATH; identity from env so a fresh machine works."""
    return dict(
        env,
        PATH=f"{annex_dir}{os.pathsep}{env.get('PATH', os.defpath)}",
        GIT_AUTHOR_NAME="kachery benchmark",
        GIT_AUTHOR_EMAIL="benchmark@localhost",
        GIT_COMMITTER_NAME="kachery benchmark",
        GIT_COMMITTER_EMAIL="benchmark@localhost",
        GIT_CONFIG_NOSYSTEM="1",
    )


def annex_repo(content: Path, repo: Path, genv: Dict[str, str]) -> None:
    """A new git-annex repository at `repo` holding a copy of the folder `content`'s files
    (nothing added yet)."""
    remove_tree(repo)
    shutil.copytree(content, repo)
    for argv in (["git", "init", "-q"], ["git", "annex", "init", "-q", "benchmark"]):
        subprocess.run(argv, cwd=repo, env=genv, check=True, capture_output=True)


@dataclass
class Side:
    """One measured command: prepared untimed by `before`, then timed by `run`."""

    name: str
    run: Callable[[], Tuple[float, float]]
    before: Callable[[], None] = lambda: None
    seconds: List[float] = field(default_factory=list)
    rss_mib: List[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak_rss(self) -> float:
        return max(self.rss_mib)


def command(argv: List[str], env: Dict[str, str]) -> Callable[[], Tuple[float, float]]:
    return lambda: run_timed(argv, env)


def interleave(sides: List[Side], repeats: int) -> None:
    """Each repeat runs every side once, in turn, so all sides share the machine's moods."""
    for i in range(repeats):
        for side in sides:
            side.before()
            seconds, rss = side.run()
            side.seconds.append(seconds)
            side.rss_mib.append(rss)
            print(
                f"  repeat {i + 1}/{repeats}: {side.name} {seconds:.2f} s",
                file=sys.stderr,
                flush=True,
            )


def clean_env(work: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode caching on, as in a normal install
    env.update(
        KACHERY_CONFIG=str(work / "config.toml"),
        KACHERY_SYSTEM_CONFIG=str(work / "system-config.toml"),
        KACHERY_DAEMON_PORT=str(free_port()),  # nothing listens: the embedded backend
        KACHERY_STORAGE_DIR=str(work / "storage"),
    )
    return env


def dataset_rows(
    work: Path, files: int, big_files: int, loop_files: int, repeats: int, with_node: bool = True
) -> List[Row]:
    """Make the trees under `work`, measure every side interleaved, return the rows."""
    work.mkdir(parents=True, exist_ok=True)
    env = clean_env(work)
    small, big = work / f"tree-{files}", work / f"tree-{big_files}"
    write_tree(small, files)
    write_tree(big, big_files)
    storage = work / "storage"
    store_env = dict(env, KACHERY_STORAGE_DIR=str(storage))
    fresh_storage: Callable[[], None] = lambda: remove_tree(storage)  # noqa: E731
    _warm_up(work, store_env)

    store_small = Side(
        f"store -r {files} files",
        command([KACHERY, "store-file", "-r", str(small)], store_env),
        fresh_storage,
    )
    store_big = Side(
        f"store -r {big_files} files",
        command([KACHERY, "store-file", "-r", str(big)], store_env),
        fresh_storage,
    )
    loop_sample = tree_files(small)[:loop_files]
    per_file = Side(
        f"{len(loop_sample)} store-file procs",
        lambda: _per_file_loop(loop_sample, store_env),
        fresh_storage,
    )
    sides = [store_small, store_big, per_file]
    annex = _git_annex_side(work, small, env)
    if annex is not None:
        sides.append(annex)
    node: Optional[Node] = None
    loads: List[Side] = []
    node_stores: List[Side] = []
    fresh_node = FreshNode(work / "store-node-storage", env)
    try:
        if with_node:
            node_stores = _node_store_sides(work, small, fresh_node)
            node, loads = _load_sides(work, small, env)
            sides.extend(node_stores + loads)
        interleave(sides, repeats)
        if node is not None:
            print(f"node peak RSS {node.peak_rss_mib():.1f} MiB", file=sys.stderr, flush=True)
    finally:
        fresh_node.stop()
        if node is not None:
            node.stop()

    base = store_small.name
    rows: List[Row] = []
    if annex is not None:
        rows.append(_row(store_small, annex.name, annex.median, 0.5))
        print(f"git annex add peak RSS {annex.peak_rss:.1f} MiB", file=sys.stderr, flush=True)
    rows.append(_row(store_big, base, store_small.median, 1.1 * big_files / files))
    for store, target in zip(node_stores, (1.5, 2.0)):
        rows.append(_row(store, base, store_small.median, target))
    for load, target in zip(loads, (1.5, None)):
        rows.append(_row(load, base, store_small.median, target))
    scale = files / len(loop_sample)
    loop = _row(per_file, base, store_small.median, None)
    rows.append(
        dataclasses.replace(
            loop,
            name=f"{files} store-file procs",
            kachery_seconds=loop.kachery_seconds * scale,
            ratio=loop.ratio * scale,
        )
    )
    print(
        f"per-file loop: {len(loop_sample)} processes took {per_file.median:.2f} s, "
        f"scaled x{scale:g} to {files} files",
        file=sys.stderr,
        flush=True,
    )
    return rows


def _row(side: Side, baseline: str, baseline_seconds: float, target: Optional[float]) -> Row:
    return Row(
        side.name,
        side.median,
        baseline,
        baseline_seconds,
        side.median / baseline_seconds,
        target,
        side.peak_rss,
    )


def _warm_up(work: Path, env: Dict[str, str]) -> None:
    """Compile and page in the CLI once on a 3-file tree (the trees themselves are warm:
    they were just written), instead of an untimed run of every full-size side."""
    tiny, storage = work / "warm-tree", work / "warm-storage"
    write_tree(tiny, 3)
    warm_env = dict(env, KACHERY_STORAGE_DIR=str(storage))
    uri = subprocess.run(
        [KACHERY, "store-file", "-r", str(tiny)],
        env=warm_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    run_timed([KACHERY, "load-file", "-r", uri, "--dest", str(work / "warm-dest")], warm_env)
    for path in (tiny, storage, work / "warm-dest"):
        remove_tree(path)


def _per_file_loop(paths: List[Path], env: Dict[str, str]) -> Tuple[float, float]:
    """One `store-file` process per file, one after another: total time, largest RSS."""
    total, peak = 0.0, 0.0
    for path in paths:
        seconds, rss = run_timed([KACHERY, "store-file", str(path)], env)
        total, peak = total + seconds, max(peak, rss)
    return total, peak


def _git_annex_side(work: Path, tree: Path, env: Dict[str, str]) -> Optional[Side]:
    annex_dir = find_git_annex()
    if annex_dir is None:
        print(GIT_ANNEX_MISSING, file=sys.stderr, flush=True)
        return None
    genv = git_env(env, annex_dir)
    repo = work / "annex-repo"
    fresh_repo = functools.partial(annex_repo, tree, repo, genv)
    argv = ["git", "-C", str(repo), "annex", "add", "--backend=SHA1", "--quiet", "."]
    fresh_repo()  # warm-up, untimed: git-annex pages in and checks its git once
    run_timed(argv, genv)
    return Side("git annex add", command(argv, genv), fresh_repo)


class FreshNode:
    """A node restarted on an emptied storage dir before each repeat of a store through it."""

    def __init__(self, storage: Path, env: Dict[str, str]) -> None:
        self.storage = storage
        self.env = dict(env, KACHERY_DAEMON_PORT=str(free_port()), KACHERY_STORAGE_DIR=str(storage))
        self.node: Optional[Node] = None
        self.token = ""

    def restart(self) -> None:
        self.stop()
        remove_tree(self.storage)
        self.node = Node(self.storage, self.env)
        self.token = _token(self.storage)

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None


def _node_store_sides(work: Path, tree: Path, node: FreshNode) -> List[Side]:
    """`store-file -r` of the tree through a fresh node: over http (the files by path), and
    over remote (a token, the bytes over the socket, an empty client cache)."""
    argv = [KACHERY, "store-file", "-r", str(tree)]
    cache = work / "store-remote-cache"

    def fresh_remote() -> None:
        node.restart()
        remove_tree(cache)

    def remote() -> Tuple[float, float]:
        remote_env = dict(
            node.env,
            KACHERY_TRANSPORT="remote",
            KACHERY_STORAGE_DIR=str(cache),
            KACHERY_AUTH_TOKEN=node.token,
        )
        return run_timed(argv, remote_env)

    http = command(argv, dict(node.env, KACHERY_TRANSPORT="http"))
    return [
        Side("store -r via http", http, node.restart),
        Side("store -r via remote", remote, fresh_remote),
    ]


def _load_sides(work: Path, tree: Path, env: Dict[str, str]) -> Tuple[Node, List[Side]]:
    """A node holding the tree (ingested by path, untimed); loads over remote and grpc."""
    storage = work / "node-storage"
    grpc_port = free_port()
    node_env = dict(env, KACHERY_DAEMON_PORT=str(free_port()), KACHERY_STORAGE_DIR=str(storage))
    node = Node(storage, node_env, "--grpc-port", str(grpc_port))
    try:
        uri = subprocess.run(
            [KACHERY, "store-file", "-r", str(tree)],
            env=node_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        remote_env = dict(
            node_env,
            KACHERY_TRANSPORT="remote",
            KACHERY_STORAGE_DIR=str(work / "remote-cache"),
            KACHERY_AUTH_TOKEN=_token(storage),
        )
        grpc_env = dict(
            env,
            KACHERY_TRANSPORT="grpc",
            KACHERY_DAEMON_HOST="127.0.0.1",
            KACHERY_GRPC_PORT=str(grpc_port),
            KACHERY_STORAGE_DIR=str(work / "grpc-cache"),
            KACHERY_AUTH_CODE_FILE=str(storage / "client-auth"),
        )
        sides = [
            _load_side("load -r via remote", uri, work / "remote", remote_env),
            _load_side("load -r via grpc", uri, work / "grpc", grpc_env),
        ]
    except BaseException:
        node.stop()
        raise
    return node, sides


def _load_side(name: str, uri: str, where: Path, env: Dict[str, str]) -> Side:
    """`load-file -r URI --dest D` into an emptied client cache: every byte travels."""
    cache, dest = Path(env["KACHERY_STORAGE_DIR"]), where.with_name(where.name + "-dest")
    argv = [KACHERY, "load-file", "-r", uri, "--dest", str(dest)]

    def empty() -> None:
        remove_tree(cache)
        remove_tree(dest)

    empty()
    run_timed(argv, env)  # warm-up, untimed: the transport's imports compile once
    return Side(name, command(argv, env), empty)


def print_table(rows: List[Row]) -> None:
    """Like run.py's table, with the ratio shown for rows without a target too."""
    header = ("operation", "kachery s", "baseline", "base s", "ratio", "target", "peak RSS")
    print("{:<22} {:>9} {:<18} {:>8} {:>7} {:>7} {:>9}  verdict".format(*header))
    for r in rows:
        target = "      -" if r.target is None else f"{r.target:>6.1f}x"
        print(
            f"{r.name:<22} {r.kachery_seconds:>9.2f} {r.baseline:<18} {r.baseline_seconds:>8.2f} "
            f"{r.ratio:>6.2f}x {target} {r.peak_rss_mib:>5.1f} MiB  {r.verdict}"
        )
    print("(medians of the same run; the RSS target is 64 MiB; timings never fail anything)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="files in the main tree")
    parser.add_argument("--big-files", type=int, default=10000, help="files in the big tree")
    parser.add_argument(
        "--loop-files", type=int, default=100, help="files stored one process each (scaled)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-node", action="store_true", help="skip the load rows")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temp dir)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kachery-bench-datasets-", dir=args.dir))
    try:
        rows = dataset_rows(
            work, args.files, args.big_files, args.loop_files, args.repeats, not args.no_node
        )
    finally:
        remove_tree(work)
    print_table(rows)
    if args.out:
        args.out.write_text(
            json.dumps([dict(asdict(r), verdict=r.verdict) for r in rows], indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
