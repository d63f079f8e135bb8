"""The measured commands of benchmarks/compare_rows.py: each system's four steps.

Every system gets one `Side` per step, in the order they must run within a repeat (store
the tree, get it elsewhere, store the big file, get it elsewhere): a get is of what the
store before it just made. Each `before` prepares untimed and ends with a `sync`, so no
side pays for the writeback of the pages the one before it (or its own set-up) dirtied.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from dataset_rows import Side, annex_repo, command, write_tree
from node_rows import Node, _token
from run import KACHERY, free_port, remove_tree, run_timed

Timed = Tuple[float, float]


@dataclass
class Inputs:
    """What every system stores: a folder of small files and a folder holding one big file,
    with the URIs kachery gives them (the same from any store: content and name)."""

    work: Path
    tree: Path
    big_file: Path
    tree_uri: str
    big_uri: str
    env: Dict[str, str]


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        remove_tree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def synced(prepare: Callable[[], None]) -> Callable[[], None]:
    def before() -> None:
        prepare()
        os.sync()

    return before


def removing(*paths: Path) -> Callable[[], None]:
    def prepare() -> None:
        for path in paths:
            remove(path)

    return synced(prepare)


def printing(argv: List[str], env: Dict[str, str], expected: str) -> Callable[[], Timed]:
    """`command`, checking that it printed `expected` (a store's URI)."""

    def run() -> Timed:
        with tempfile.TemporaryFile() as out:
            timed = run_timed(argv, env, out.fileno())
            out.seek(0)
            printed = out.read().decode().strip()
        if printed != expected:
            raise SystemExit(f"{' '.join(argv)} printed {printed!r}, not {expected!r}")
        return timed

    return run


def in_sequence(*steps: Callable[[], Timed]) -> Timed:
    """Several timed commands counted as one: total seconds, the largest peak RSS."""
    results = [step() for step in steps]
    return sum(r[0] for r in results), max(r[1] for r in results)


def embedded_sides(inp: Inputs) -> List[Side]:
    """The `local` backend in one storage dir; a get is a hash-checked copy out of it."""
    storage = inp.work / "embedded-storage"
    env = dict(inp.env, KACHERY_STORAGE_DIR=str(storage))
    tree_dest, big_dest = inp.work / "embedded-tree-copy", inp.work / "embedded-big-copy"
    load_tree = [KACHERY, "load-file", "-r", inp.tree_uri, "--dest", str(tree_dest)]
    return [
        Side(
            "embedded store tree",
            printing([KACHERY, "store-file", "-r", str(inp.tree)], env, inp.tree_uri),
            removing(storage),
        ),
        Side("embedded get tree", command(load_tree, env), removing(tree_dest)),
        Side(
            "embedded store big",
            printing([KACHERY, "store-file", str(inp.big_file)], env, inp.big_uri),
            removing(storage),
        ),
        Side(
            "embedded get big",
            command([KACHERY, "load-file", inp.big_uri, "--dest", str(big_dest)], env),
            removing(big_dest),
        ),
    ]


class NodeRuns:
    """A `kachery-daemon` on a loopback port, started afresh (new storage, new token) for
    each repeat: its storage is emptied while no node holds it open."""

    def __init__(self, work: Path, env: Dict[str, str]) -> None:
        self.work, self.env = work, env
        self.storage = work / "node-storage"
        self.node: Optional[Node] = None
        self.port, self.token = 0, ""
        self.peak_rss_mib = 0.0
        self.warm_tree = work / "node-warm-tree"
        write_tree(self.warm_tree, 3)

    def restart(self) -> None:
        self.stop()
        remove_tree(self.storage)
        self.port = free_port()
        self.node = Node(self.storage, self.client_a())
        self.token = _token(self.storage)
        # Untimed: the node's and the clients' code paths run once before the timed runs.
        uri = subprocess.run(
            [KACHERY, "store-file", "-r", str(self.warm_tree)],
            env=self.client_a(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dest = self.work / "node-warm-dest"
        run_timed([KACHERY, "load-file", "-r", uri, "--dest", str(dest)], self.client_b())
        remove_tree(dest)
        remove_tree(self.cache_b)

    def client_a(self) -> Dict[str, str]:
        """Storing through the local node: the `http` backend, the node's storage."""
        return dict(
            self.env, KACHERY_DAEMON_PORT=str(self.port), KACHERY_STORAGE_DIR=str(self.storage)
        )

    def client_b(self) -> Dict[str, str]:
        """Elsewhere: `remote` with a token, into a cache of its own."""
        return dict(
            self.client_a(),
            KACHERY_TRANSPORT="remote",
            KACHERY_STORAGE_DIR=str(self.cache_b),
            KACHERY_AUTH_TOKEN=self.token,
        )

    @property
    def cache_b(self) -> Path:
        return self.work / "node-client-b-cache"

    def stop(self) -> None:
        if self.node is not None:
            self.peak_rss_mib = max(self.peak_rss_mib, self.node.peak_rss_mib())
            self.node.stop()
            self.node = None


def node_sides(inp: Inputs, runs: NodeRuns) -> List[Side]:
    tree_dest = inp.work / "node-tree-copy"

    def a(argv: List[str], uri: str) -> Callable[[], Timed]:
        return lambda: printing(argv, runs.client_a(), uri)()

    def b(argv: List[str]) -> Callable[[], Timed]:
        return lambda: run_timed(argv, runs.client_b())

    load_tree = [KACHERY, "load-file", "-r", inp.tree_uri, "--dest", str(tree_dest)]
    return [
        Side(
            "node store tree",
            a([KACHERY, "store-file", "-r", str(inp.tree)], inp.tree_uri),
            synced(runs.restart),
        ),
        Side("node get tree", b(load_tree), removing(runs.cache_b, tree_dest)),
        Side(
            "node store big",
            a([KACHERY, "store-file", str(inp.big_file)], inp.big_uri),
            synced(lambda: None),
        ),
        Side("node get big", b([KACHERY, "load-file", inp.big_uri]), removing(runs.cache_b)),
    ]


def dvc_env(work: Path, genv: Dict[str, str]) -> Dict[str, str]:
    """No analytics (nothing leaves the machine), and every config and cache of dvc's own
    under `work`, so nothing carries over from one repeat or one user to the next."""
    return dict(
        genv,
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(work / "dvc-site-cache"),
        DVC_GLOBAL_CONFIG_DIR=str(work / "dvc-global-config"),
        DVC_SYSTEM_CONFIG_DIR=str(work / "dvc-system-config"),
    )


def dvc_sides(inp: Inputs, dvc: Path, genv: Dict[str, str]) -> List[Side]:
    """Per input: `dvc add` and `dvc push` (two sides) to a local-directory remote in a
    new repository; get = `git clone` of it and `dvc pull` (fetch + checkout) in the clone."""
    env = dvc_env(inp.work, genv)
    return [
        *_dvc_input(inp.work / "dvc-tree", inp.tree, "tree", dvc, env),
        *_dvc_input(inp.work / "dvc-big", inp.big_file, "big", dvc, env),
    ]


def _dvc_input(repo: Path, source: Path, kind: str, dvc: Path, env: Dict[str, str]) -> List[Side]:
    remote, clone = repo.with_name(repo.name + "-remote"), repo.with_name(repo.name + "-clone")

    def fresh() -> None:
        for path in (repo, remote, Path(env["DVC_SITE_CACHE_DIR"])):
            remove(path)
        repo.mkdir()
        git(["init", "-q"], repo, env)
        for argv in (["init", "-q"], ["remote", "add", "-q", "-d", "store", str(remote)]):
            subprocess.run([str(dvc), *argv], cwd=repo, env=env, check=True)
        if source.is_dir():
            shutil.copytree(source, repo / source.name)
        else:
            shutil.copyfile(source, repo / source.name)

    def commit_and_clear() -> None:
        git(["add", "-A"], repo, env)
        git(["commit", "-q", "-m", "data"], repo, env)
        remove(clone)

    def add() -> Timed:
        return run_timed([str(dvc), "add", "-q", source.name], env, cwd=repo)

    def push() -> Timed:
        return run_timed([str(dvc), "push", "-q"], env, cwd=repo)

    def get() -> Timed:
        return in_sequence(
            lambda: run_timed(["git", "clone", "-q", str(repo), str(clone)], env),
            lambda: run_timed([str(dvc), "pull", "-q"], env, cwd=clone),
        )

    return [
        Side(f"dvc add {kind}", add, synced(fresh)),
        Side(f"dvc push {kind}", push),
        Side(f"dvc get {kind}", get, synced(commit_and_clear)),
    ]


def annex_sides(inp: Inputs, genv: Dict[str, str]) -> List[Side]:
    """Per input: `git annex add --backend=SHA1 .` in a new repository A (the commit after
    it untimed); get = `git clone` of A and `git annex get .` in the clone."""
    return [
        *_annex_input(inp.work / "annex-tree", inp.tree, "tree", genv),
        *_annex_input(inp.work / "annex-big", inp.big_file.parent, "big", genv),
    ]


def _annex_input(repo: Path, content: Path, kind: str, genv: Dict[str, str]) -> List[Side]:
    clone = repo.with_name(repo.name + "-clone")
    add = ["git", "-C", str(repo), "annex", "add", "--backend=SHA1", "--quiet", "."]

    def fresh() -> None:
        annex_repo(content, repo, genv)

    def commit_and_clear() -> None:
        git(["commit", "-q", "-m", "data"], repo, genv)
        remove(clone)

    def get() -> Timed:
        return in_sequence(
            lambda: run_timed(["git", "clone", "-q", str(repo), str(clone)], genv),
            lambda: run_timed(["git", "-C", str(clone), "annex", "get", "--quiet", "."], genv),
        )

    return [
        Side(f"git annex add {kind}", command(add, genv), synced(fresh)),
        Side(f"git annex get {kind}", get, synced(commit_and_clear)),
    ]


def git(args: List[str], repo: Path, env: Dict[str, str]) -> None:
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
