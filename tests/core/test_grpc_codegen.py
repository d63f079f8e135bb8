"""The committed gRPC code is exactly what scripts/generate_grpc.sh makes from kachery.proto.

Run with the pinned grpcio-tools (the test extra), so a proto edit without regenerating, or
a hand edit of generated code, fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
API = Path("kachery_core") / "grpc_api"
GENERATED = ["kachery_pb2.py", "kachery_pb2.pyi", "kachery_pb2_grpc.py"]


def test_committed_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "generate_grpc.sh"), str(tmp_path)],
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    made = sorted(p.name for p in (tmp_path / API).iterdir())
    assert made == sorted(GENERATED)
    for name in GENERATED:
        fresh = (tmp_path / API / name).read_text()
        committed = (ROOT / API / name).read_text()
        assert committed == fresh, f"{API / name} is stale: run scripts/generate_grpc.sh"


def test_generated_code_imports_with_this_runtime() -> None:
    """The protobuf gencode checks its runtime version on import; grpc checks grpcio's."""
    from kachery_core.grpc_api import kachery_pb2, kachery_pb2_grpc

    assert kachery_pb2.DataChunk(data=b"x").SerializeToString() == b"\n\x01x"
    assert hasattr(kachery_pb2_grpc, "KacheryStub")
