"""The large-file rows of issue 21, each against its own floor, interleaved in one run.

    python benchmarks/bulk_rows.py --size-mib 1024 --repeats 3
    python benchmarks/bulk_rows.py --size-mib 256 --build old=/path/to/bin --build new=.venv/bin

Every repeat runs, one after the other, on the same page-cached random file:

- the hashing floor (`floor.py`: both SHA-1s of a large store, two threads, mmap), one
  SHA-1 pass (hashlib over an mmap of the file) and `cp`, each in its own process;
- `store-file` embedded (fresh storage dir), through a node over `http` (the client
  sends the path) and over `remote` (a token: the bytes cross the socket);
- `load-file` over `remote` and over `grpc` into an empty client cache;
- `load-file URI --dest P` of an object present in the embedded store (a checked copy).

Stores and loads are divided by the floor of the same repeat, `--dest` by one SHA-1 pass
plus `cp`. Each command's CPU time (user + system, from wait4) and the node's (from
/proc) are kept, for the accounting of what the 2 cores allow. With several `--build`s
(directories holding a `kachery-client` and `kachery-daemon`), each repeat runs every
build in turn, so old and new code are compared in the same minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import node_rows
from node_rows import Node, _token
from run import TIME, _write_random, free_port, remove_tree

HERE = Path(__file__).resolve().parent
TARGETS = {
    "store embedded": 1.35,
    "store via node (http)": 1.5,
    "store via node (remote)": 1.5,
    "load via remote": 1.5,
    "load via grpc": 1.5,
    "load-file --dest": 1.3,
}


def timed(argv: List[str], env: Dict[str, str]) -> Tuple[float, float, float]:
    """(wall seconds, CPU seconds user+system, peak RSS MiB) of one command."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        wrapped = [TIME, "-f", "%M", "-o", rss_file.name, *argv] if TIME else argv
        started = time.perf_counter()
        proc = subprocess.Popen(wrapped, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"benchmark command failed: {' '.join(argv)}: {err}")
        lines = rss_file.read().split() if TIME else []
        peak = float(lines[-1]) if lines else float(usage.ru_maxrss)
    return wall, usage.ru_utime + usage.ru_stime, peak / 1024.0


def child_seconds(script: str, data: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", script, str(data)], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


ONE_PASS = """
import hashlib, mmap, sys, time
with open(sys.argv[1], "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
    hashlib.sha1(m).hexdigest()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter(); hashlib.sha1(m).hexdigest(); best = min(best, time.perf_counter() - t)
print(best)
"""
FLOOR = f"import sys; sys.path.insert(0, {str(HERE)!r}); import floor; from pathlib import Path; print(floor.hashing_floor_seconds(Path(sys.argv[1])))"


def node_cpu(pid: int) -> float:
    """utime + stime of a running process (and its reaped children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks


class Build:
    """One build under test: its CLI, its node (http and grpc) and the environments."""

    def __init__(self, name: str, bin_dir: Path, work: Path, env: Dict[str, str]) -> None:
        self.name, self.cli = name, str(bin_dir / "kachery-client")
        self.work = work / name
        self.work.mkdir(parents=True)
        self.node_storage = self.work / "node-storage"
        http_port, grpc_port = free_port(), free_port()
        self.env = dict(env, KACHERY_STORAGE_DIR=str(self.work / "embedded"))
        self.node_env = dict(
            env, KACHERY_DAEMON_PORT=str(http_port), KACHERY_STORAGE_DIR=str(self.node_storage)
        )
        node_rows.BIN = bin_dir  # this build's kachery-daemon
        self.node = Node(self.node_storage, self.node_env, "--grpc-port", str(grpc_port))
        cache = str(self.work / "client-cache")
        self.remote_env = dict(
            self.node_env,
            KACHERY_TRANSPORT="remote",
            KACHERY_STORAGE_DIR=cache,
            KACHERY_AUTH_TOKEN=_token(self.node_storage),
        )
        self.grpc_env = dict(
            env,
            KACHERY_TRANSPORT="grpc",
            KACHERY_DAEMON_HOST="127.0.0.1",
            KACHERY_GRPC_PORT=str(grpc_port),
            KACHERY_STORAGE_DIR=cache,
            KACHERY_AUTH_CODE_FILE=str(self.node_storage / "client-auth"),
        )

    def rows(self, data: Path) -> List[Tuple[str, Callable[[], None], List[str], Dict[str, str]]]:
        """(row, what to empty first, argv, env) for each measured command, in order."""
        embedded, cache = self.work / "embedded", self.work / "client-cache"
        dest = self.work / "dest.bin"
        uri = self.uri(data)

        def no_objects() -> None:
            remove_tree(embedded)
            remove_tree(self.node_storage / "sha1")
            remove_tree(cache)

        def empty_cache() -> None:
            remove_tree(cache)

        def dest_ready() -> None:
            if dest.exists():
                dest.unlink()
            if not (embedded / "sha1").exists():
                subprocess.run(
                    [self.cli, "store-file", str(data)],
                    env=self.env,
                    check=True,
                    capture_output=True,
                )

        store = [self.cli, "store-file", str(data)]
        load = [self.cli, "load-file", uri]
        return [
            ("store embedded", no_objects, store, self.env),
            ("store via node (http)", no_objects, store, self.node_env),
            ("store via node (remote)", no_objects, store, self.remote_env),
            ("load via remote", empty_cache, load, self.remote_env),
            ("load via grpc", empty_cache, load, self.grpc_env),
            ("load-file --dest", dest_ready, [*load, "--dest", str(dest)], self.env),
            ("start-up (load-file hit)", dest_ready, load, self.env),  # the fixed cost
        ]

    def uri(self, data: Path) -> str:
        out = subprocess.run(
            [self.cli, "store-file", str(data)],
            env=self.node_env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()


def run(
    data: Path, builds: List[Build], repeats: int, only: Optional[List[str]]
) -> List[Dict[str, object]]:
    records: List[Dict[str, object]] = []
    for repeat in range(-1, repeats):  # -1: warm-up, untimed
        floor = child_seconds(FLOOR, data)
        one_pass = child_seconds(ONE_PASS, data)
        copy = data.with_name("cp.bin")
        cp_wall, cp_cpu, _ = timed(["cp", str(data), str(copy)], {})
        copy.unlink()
        # CPU of the parts, for the accounting: a start-up (a hit), the kernel copy (`cp`)
        print(
            f"floor {floor:.3f} s, one SHA-1 pass {one_pass:.3f} s, cp {cp_wall:.3f} s "
            f"({cp_cpu:.2f} CPU-s)",
            flush=True,
        )
        for build in builds:
            for name, prepare, argv, env in build.rows(data):
                if only and not any(o in name for o in only):
                    continue
                prepare()
                before = node_cpu(build.node.proc.pid)
                wall, cpu, peak = timed(argv, env)
                node = node_cpu(build.node.proc.pid) - before
                base = one_pass + cp_wall if "--dest" in name else floor
                if repeat < 0:
                    continue
                record = dict(
                    cp_cpu=cp_cpu,
                    build=build.name,
                    row=name,
                    repeat=repeat,
                    seconds=wall,
                    cpu=cpu,
                    node_cpu=node,
                    rss_mib=peak,
                    node_peak_mib=build.node.peak_rss_mib(),  # VmHWM so far: all rows until now
                    baseline=base,
                    ratio=wall / base,
                    floor=floor,
                    one_pass=one_pass,
                    cp=cp_wall,
                )
                records.append(record)
                print(
                    f"{build.name:>6} {name:<24} {wall:6.3f} s  {wall / base:5.2f}x "
                    f"(base {base:.3f})  cpu {cpu:5.2f} node {node:5.2f}  {peak:5.1f} MiB "
                    f"(node peak so far {record['node_peak_mib']:5.1f} MiB)",
                    flush=True,
                )
    return records


def summary(records: List[Dict[str, object]]) -> None:
    print("\nmedians:")
    keys = sorted({(str(r["build"]), str(r["row"])) for r in records}, key=lambda k: k[1])
    for build, row in keys:
        mine = [r for r in records if r["build"] == build and r["row"] == row]

        def med(key: str, mine: List[Dict[str, object]] = mine) -> float:
            return statistics.median(float(str(r[key])) for r in mine)

        target = TARGETS.get(row)
        print(
            f"{build:>6} {row:<24} {med('seconds'):6.3f} s  ratio {med('ratio'):5.2f}x "
            f"(target {target}x)  cpu {med('cpu'):5.2f} node {med('node_cpu'):5.2f}  "
            f"max RSS {max(float(r['rss_mib']) for r in mine):5.1f} MiB"
        )
    for build in sorted({str(r["build"]) for r in records}):
        peaks = [float(str(r["node_peak_mib"])) for r in records if r["build"] == build]
        print(f"{build:>6} node peak RSS (VmHWM, whole run) {max(peaks):5.1f} MiB (target 100)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--build", action="append", default=[], help="NAME=BIN_DIR")
    parser.add_argument("--only", action="append", help="rows whose name contains this")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    work = Path(tempfile.mkdtemp(prefix="kachery-bulk-"))
    env.update(
        KACHERY_CONFIG=str(work / "config.toml"),
        KACHERY_SYSTEM_CONFIG=str(work / "system-config.toml"),
        KACHERY_DAEMON_PORT=str(free_port()),  # nothing listens: the embedded backend
    )
    specs = args.build or [f"this={Path(sys.executable).parent}"]
    builds: List[Build] = []
    try:
        data = work / "data.bin"
        _write_random(data, args.size_mib << 20)
        for spec in specs:
            name, _, bin_dir = spec.partition("=")
            builds.append(Build(name, Path(bin_dir).resolve(), work, env))
        records = run(data, builds, args.repeats, args.only)
        summary(records)
        if args.out:
            args.out.write_text(json.dumps(records, indent=2))
    finally:
        for build in builds:
            build.node.stop()
        remove_tree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
